"""Matching Mailchimp members to Salesforce Contacts and Leads by email, against the local people mirror.

Rules (design §2): emails compare case-insensitively; a Contact wins over a Lead; converted Leads are skipped;
several candidates of the winning kind pick the oldest (CreatedDate, then Id) and the pick is reported.
The people come from ``salesforce.mirror`` (refreshed incrementally), never from a query per member; a person
account is there as its person contact, so it is a Contact here and its match is the account's PersonContactId;
``person_account_id`` names the Account itself (null for everyone else), where the person's own fields are written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.salesforce.resource import SalesforceClient

MATCH_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "email_id",
    "email_address",
    "salesforce_id",
    "salesforce_object",
    "candidate_count",
    "match_note",
    "person_account_id",
)
# What matching reads of member_statuses.
MEMBER_KEY_COLUMNS: tuple[str, ...] = ("campaign_id", "email_id", "email_address")
UNMATCHED_COLUMNS: tuple[str, ...] = ("campaign_id", "email_id", "email_address", "reason")
PEOPLE_COLUMNS: tuple[str, ...] = ("salesforce_id", "salesforce_object", "email", "created_date", "person_account_id")


def match_members(members: pd.DataFrame, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matches, unmatched) for members (campaign_id, email_id, email_address) against people (PEOPLE_COLUMNS).

    Pure and vectorised: candidates are ranked Contact before Lead, then oldest CreatedDate, then Id.
    Most addresses have one candidate, so only the people sharing an address are sorted; the others are their
    address's pick as they stand.
    """
    people = people.dropna(subset=["email"])
    email_key = people["email"].str.strip().str.lower().to_numpy(dtype=object)
    codes, uniques = pd.factorize(email_key)
    per_key = np.bincount(codes, minlength=len(uniques))
    shared = per_key[codes] > 1

    contested = people[shared]
    ranked = pd.DataFrame(
        {
            "email_code": codes[shared],
            "kind_rank": np.where(contested["salesforce_object"] == "Contact", 0, 1),
            "created_at": pd.to_datetime(
                contested["created_date"], utc=True, errors="coerce", format="ISO8601"
            ).reset_index(drop=True),
            "salesforce_id": contested["salesforce_id"].to_numpy(),
            "row": np.flatnonzero(shared),
        }
    ).sort_values(["email_code", "kind_rank", "created_at", "salesforce_id"], na_position="last")
    picked = ranked.drop_duplicates("email_code", keep="first")["row"].to_numpy()
    best_rows = np.sort(np.concatenate([np.flatnonzero(~shared), picked]))

    best_keys = pd.Index(email_key[best_rows])
    member_keys = members["email_address"].str.strip().str.lower().to_numpy(dtype=object)
    position = best_keys.get_indexer(member_keys)
    found = position >= 0
    take = best_rows[position[found]]

    matches = members.loc[found, list(MEMBER_KEY_COLUMNS)].reset_index(drop=True)
    salesforce_object = people["salesforce_object"].to_numpy(dtype=object)[take]
    salesforce_id = people["salesforce_id"].to_numpy(dtype=object)[take]
    candidate_count = per_key[codes[take]].astype("int64")
    if "person_account_id" in people.columns:
        account = people["person_account_id"].to_numpy(dtype=object)[take]
        account = np.where(pd.isna(account), None, account)
    else:
        account = np.full(len(take), None, dtype=object)
    matches["salesforce_id"] = salesforce_id
    matches["salesforce_object"] = salesforce_object
    matches["candidate_count"] = candidate_count
    note = np.full(len(take), "", dtype=object)
    several = candidate_count > 1
    if several.any():
        note[several] = (
            "picked "
            + pd.Series(salesforce_object[several], dtype=object)
            + " "
            + pd.Series(salesforce_id[several], dtype=object)
            + " of "
            + pd.Series(candidate_count[several]).astype(str)
            + " candidates (Contact over Lead, then oldest)"
        ).to_numpy()
    matches["match_note"] = note
    matches["person_account_id"] = account

    unmatched = members.loc[~found, list(MEMBER_KEY_COLUMNS)].reset_index(drop=True)
    unmatched["reason"] = "no Contact or unconverted Lead has this email"
    return matches[list(MATCH_COLUMNS)], unmatched[list(UNMATCHED_COLUMNS)]


def match_campaign_members(
    client: SalesforceClient, member_statuses: pd.DataFrame, mirror: PeopleMirror | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Refresh the org's people mirror (a few calls, whatever the campaign's size) and match against it.

    See ``match_members`` for the rules; ``mirror.last_refresh`` says what the refresh did.
    """
    if mirror is None:
        from campaign_pipeline.storage.database import get_engine

        mirror = PeopleMirror(get_engine())
    mirror.refresh(client)
    people = mirror.people_for(client.org_id, member_statuses["email_address"])
    return match_members(member_statuses, people)
