"""Opt-out sync: HasOptedOutOfEmail = true on the matched Contact/Lead of each member who unsubscribed in Mailchimp."""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.salesforce_records import _with_meta

# Ledger kinds, one per sObject (a record kind writes one sObject).
CONTACT_OPT_OUT = "contact_opt_out"
LEAD_OPT_OUT = "lead_opt_out"
OPT_OUT_FIELD = "HasOptedOutOfEmail"
# Salesforce's fixed key prefixes of the two person objects: how the frame's rows split into the two kinds.
PERSON_ID_PREFIXES: dict[str, str] = {"Contact": "003", "Lead": "00Q"}


def desired_opt_outs(member_statuses: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """One row per campaign x matched person of a member who unsubscribed: that person's Id and the opt-out flag.

    The flag is only ever set true: a member who did not unsubscribe has no row at all, so nothing here can
    clear an opt-out someone set in Salesforce (or one Mailchimp no longer reports after a resubscribe). Keyed by
    campaign + person, like the CampaignMember; ``Id`` names the existing record the write updates.
    """
    unsubscribed = member_statuses.loc[
        member_statuses["was_unsubscribed"].astype(bool), ["campaign_id", "email_id", "sent_at_is_exact"]
    ]
    joined = unsubscribed.merge(
        matches[["campaign_id", "email_id", "salesforce_id", "salesforce_object"]],
        on=["campaign_id", "email_id"],
        how="inner",
    )
    joined = joined[joined["salesforce_object"].isin(list(PERSON_ID_PREFIXES))]
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
    """The rows of ``desired_opt_outs`` whose person is a ``sobject`` (Contact or Lead)."""
    ids = desired["Id"].astype(str)
    return desired[ids.str.startswith(PERSON_ID_PREFIXES[sobject])].reset_index(drop=True)
