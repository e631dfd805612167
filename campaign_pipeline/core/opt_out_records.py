"""Opt-out sync: the matched person of each member who unsubscribed in Mailchimp is marked opted out of email.

A Contact or Lead gets ``HasOptedOutOfEmail = true``. A person account's person contact is not edited directly (a
real org refuses an update of a person contact's fields, INSUFFICIENT_ACCESS_OR_READONLY; the Person Account is
the interface for the person's fields): its Account gets ``PersonHasOptedOutOfEmail = true``, which the org
carries to the person contact's ``HasOptedOutOfEmail``.
"""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.salesforce_records import _with_meta

# Ledger kinds, one per sObject (a record kind writes one sObject).
CONTACT_OPT_OUT = "contact_opt_out"
LEAD_OPT_OUT = "lead_opt_out"
ACCOUNT_OPT_OUT = "account_opt_out"
OPT_OUT_FIELD = "HasOptedOutOfEmail"
# The same flag on a person account (Account), the person's record of its fields.
PERSON_ACCOUNT_OPT_OUT_FIELD = "PersonHasOptedOutOfEmail"
# Salesforce's fixed key prefixes of the person objects: how the frame's rows split into the kinds.
PERSON_ID_PREFIXES: dict[str, str] = {"Contact": "003", "Lead": "00Q", "Account": "001"}


def desired_opt_outs(member_statuses: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """One row per campaign x matched person of a member who unsubscribed: that person's Id and the opt-out flag.

    ``Id`` is the Contact or Lead matched, or for a person contact (``person_account_id`` set by matching) its
    person account, the record the org lets us write the person's fields on. The flag is only ever set true: a member who did not unsubscribe has no row at all, so nothing here can
    clear an opt-out someone set in Salesforce (or one Mailchimp no longer reports after a resubscribe). Keyed by
    campaign + person, like the CampaignMember; ``Id`` names the existing record the write updates.
    """
    unsubscribed = member_statuses.loc[
        member_statuses["was_unsubscribed"].astype(bool), ["campaign_id", "email_id", "sent_at_is_exact"]
    ]
    people = matches[["campaign_id", "email_id", "salesforce_id", "salesforce_object"]].copy()
    if "person_account_id" in matches.columns:
        # Frames of before matching knew person accounts have no column: none of their people is one.
        account = matches["person_account_id"].astype(object)
        person = account.notna() & (account.astype(str) != "")
        people["salesforce_id"] = people["salesforce_id"].where(~person, account)
    joined = unsubscribed.merge(people, on=["campaign_id", "email_id"], how="inner")
    joined = joined[joined["salesforce_object"].isin(["Contact", "Lead"])]
    joined = joined.sort_values(["campaign_id", "salesforce_id", "email_id"]).drop_duplicates(
        ["campaign_id", "salesforce_id"]
    )
    desired = pd.DataFrame(
        {
            "sync_key": (joined["campaign_id"] + "|opt_out|" + joined["salesforce_id"]).to_numpy(dtype=object),
            "campaign_id": joined["campaign_id"].to_numpy(dtype=object),
            "sent_at_is_exact": joined["sent_at_is_exact"].astype(bool).to_numpy(),
            "Id": joined["salesforce_id"].to_numpy(dtype=object),
            OPT_OUT_FIELD: True,
        }
    )
    return _with_meta(desired)


def opt_outs_of(desired: pd.DataFrame, sobject: str) -> pd.DataFrame:
    """The rows of ``desired_opt_outs`` whose person is a ``sobject`` (Contact, Lead, or a person's Account).

    An Account's rows carry the flag as the Account names it, ``PersonHasOptedOutOfEmail``.
    """
    ids = desired["Id"].astype(str)
    rows = desired[ids.str.startswith(PERSON_ID_PREFIXES[sobject])].reset_index(drop=True)
    if sobject == "Account":
        rows = rows.rename(columns={OPT_OUT_FIELD: PERSON_ACCOUNT_OPT_OUT_FIELD})
    return rows
