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
    """
    people = people.dropna(subset=["email"]).copy()
    if "person_account_id" not in people.columns:
        people["person_account_id"] = None
    people["email_key"] = people["email"].str.strip().str.lower()
    people["kind_rank"] = np.where(people["salesforce_object"] == "Contact", 0, 1)
    people["created_at"] = pd.to_datetime(people["created_date"], utc=True, errors="coerce", format="ISO8601")
    ranked = people.sort_values(["email_key", "kind_rank", "created_at", "salesforce_id"], na_position="last")
    counts = ranked.groupby("email_key").size().rename("candidate_count")
    best = ranked.drop_duplicates("email_key", keep="first").set_index("email_key")
    best = best.join(counts)

    keyed = members[list(MEMBER_KEY_COLUMNS)].copy()
    keyed["email_key"] = keyed["email_address"].str.strip().str.lower()
    joined = keyed.merge(
        best[["salesforce_id", "salesforce_object", "candidate_count", "person_account_id"]],
        left_on="email_key",
        right_index=True,
        how="left",
    )
    found = joined["salesforce_id"].notna()
    matches = joined[found].copy()
    matches["candidate_count"] = matches["candidate_count"].astype("int64")
    account = matches["person_account_id"].astype(object)
    matches["person_account_id"] = account.where(account.notna(), None)
    several = matches["candidate_count"] > 1
    matches["match_note"] = np.where(
        several,
        "picked "
        + matches["salesforce_object"]
        + " "
        + matches["salesforce_id"]
        + " of "
        + matches["candidate_count"].astype(str)
        + " candidates (Contact over Lead, then oldest)",
        "",
    )
    unmatched = joined[~found].copy()
    unmatched["reason"] = "no Contact or unconverted Lead has this email"
    return (
        matches[list(MATCH_COLUMNS)].reset_index(drop=True),
        unmatched[list(UNMATCHED_COLUMNS)].reset_index(drop=True),
    )


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
