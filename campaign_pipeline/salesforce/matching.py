"""Matching Mailchimp members to Salesforce Contacts and Leads by email: escaped SOQL, chunked IN-lists, one pick.

Rules (design §2): emails compare case-insensitively; a Contact wins over a Lead; converted Leads are skipped;
several candidates of the winning kind pick the oldest (CreatedDate, then Id) and the pick is reported.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from simple_salesforce.format import format_soql

from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.salesforce.soql import chunk_for_in_list

MATCH_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "email_id",
    "email_address",
    "salesforce_id",
    "salesforce_object",
    "candidate_count",
    "match_note",
)
UNMATCHED_COLUMNS: tuple[str, ...] = ("campaign_id", "email_id", "email_address", "reason")
PEOPLE_COLUMNS: tuple[str, ...] = ("salesforce_id", "salesforce_object", "email", "created_date")
MATCH_QUERY_WORKERS = 4

_QUERIES = {
    "Contact": "SELECT Id, Email, CreatedDate FROM Contact WHERE Email IN {}",
    # Converted Leads live on as Contacts; matching them would double-count the person.
    "Lead": "SELECT Id, Email, CreatedDate FROM Lead WHERE Email IN {} AND IsConverted = false",
}


def fetch_people(client: SalesforceClient, emails: list[str]) -> pd.DataFrame:
    """Contacts and unconverted Leads whose Email is one of ``emails`` (any case), as PEOPLE_COLUMNS."""
    wanted = sorted({email.strip().lower() for email in emails if isinstance(email, str) and email.strip()})
    # format_soql quotes and escapes every value, so an address like o'brien@x.com stays one literal.
    queries = [
        (sobject, format_soql(template, chunk))
        for sobject, template in _QUERIES.items()
        for chunk in chunk_for_in_list(wanted, template)
    ]
    # Chunks are independent reads; a few at a time cut the wall time without crowding the org.
    with ThreadPoolExecutor(max_workers=MATCH_QUERY_WORKERS) as pool:
        answers = list(pool.map(lambda query: client.query_all(query[1]), queries))
    frames = [
        pd.DataFrame(
            {
                "salesforce_id": [record["Id"] for record in records],
                "salesforce_object": sobject,
                "email": [record.get("Email") for record in records],
                "created_date": [record.get("CreatedDate") for record in records],
            }
        )
        for (sobject, _), records in zip(queries, answers, strict=True)
        if records
    ]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in PEOPLE_COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(PEOPLE_COLUMNS)]


def match_members(members: pd.DataFrame, people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matches, unmatched) for members (campaign_id, email_id, email_address) against fetched people.

    Pure and vectorised: candidates are ranked Contact before Lead, then oldest CreatedDate, then Id.
    """
    people = people.dropna(subset=["email"]).copy()
    people["email_key"] = people["email"].str.strip().str.lower()
    people["kind_rank"] = np.where(people["salesforce_object"] == "Contact", 0, 1)
    people["created_at"] = pd.to_datetime(people["created_date"], utc=True, errors="coerce", format="ISO8601")
    ranked = people.sort_values(["email_key", "kind_rank", "created_at", "salesforce_id"], na_position="last")
    counts = ranked.groupby("email_key").size().rename("candidate_count")
    best = ranked.drop_duplicates("email_key", keep="first").set_index("email_key")
    best = best.join(counts)

    keyed = members[["campaign_id", "email_id", "email_address"]].copy()
    keyed["email_key"] = keyed["email_address"].str.strip().str.lower()
    joined = keyed.merge(
        best[["salesforce_id", "salesforce_object", "candidate_count"]],
        left_on="email_key",
        right_index=True,
        how="left",
    )
    found = joined["salesforce_id"].notna()
    matches = joined[found].copy()
    matches["candidate_count"] = matches["candidate_count"].astype("int64")
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
    client: SalesforceClient, member_statuses: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fetch the people for a campaign's members and match them (see ``match_members``)."""
    people = fetch_people(client, member_statuses["email_address"].tolist())
    return match_members(member_statuses, people)
