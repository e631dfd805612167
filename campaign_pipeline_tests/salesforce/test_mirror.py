"""The people mirror: filled by Bulk query jobs, refreshed by SystemModstamp, deletes caught, matching unchanged."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from campaign_pipeline.salesforce.matching import match_campaign_members, match_members
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox, seed_people

from .conftest import AUDIENCE, statuses_for


@pytest.fixture
def mirror(pg_engine) -> PeopleMirror:
    return PeopleMirror(pg_engine, schema=f"mirror_test_{uuid.uuid4().hex[:8]}")


def _people_by_email(mirror: PeopleMirror, org_id: str, emails: list[str]) -> dict[str, set[str]]:
    people = mirror.people_for(org_id, emails)
    return {email: set(group["salesforce_id"]) for email, group in people.groupby("email")}


def test_first_refresh_fills_by_bulk_query_and_a_quiet_org_costs_two_calls(sandbox_org, mirror) -> None:
    client = sandbox_org.client()
    first = mirror.refresh(client)
    contacts = [c for c in sandbox_org.org.records("Contact") if c.get("Email")]
    leads = [lead for lead in sandbox_org.org.records("Lead") if lead.get("Email")]
    assert first.mode == "full" and first.rows == len(contacts) + len(leads) > 20
    # Contact describe (are there Person Accounts?), then per object: create job, status, one results page.
    assert first.calls == 7
    jobs = [path for method, path, _ in sandbox_org.org.call_log if method == "POST" and path.endswith("/jobs/query")]
    assert len(jobs) == 2

    again = mirror.refresh(sandbox_org.client())
    # Only what changed since the newest SystemModstamp (less its overlap) comes back: a few rows, not the org.
    assert again.mode == "incremental" and again.calls == 2 and again.rows == first.rows
    assert again.upserted < 10
    metadata = again.metadata()
    assert metadata["mirror_rows"] == first.rows and metadata["mirror_calls"] == 2


def test_incremental_refresh_picks_up_new_changed_converted_and_deleted_people(sandbox_org, mirror) -> None:
    client = sandbox_org.client()
    mirror.refresh(client)
    sf = client.sf
    contacts = [c for c in sandbox_org.org.records("Contact") if c.get("Email")]
    leads = [lead for lead in sandbox_org.org.records("Lead") if lead.get("Email") and not lead.get("IsConverted")]
    changed_contact, deleted_contact = contacts[0], contacts[1]
    converted_lead = leads[0]
    new_id = sf.Contact.create({"LastName": "Newcomer", "Email": "Newcomer@Example.org"})["id"]
    sf.Contact.update(changed_contact["Id"], {"Email": "Moved.Address@Example.org"})
    sf.Contact.delete(deleted_contact["Id"])
    sandbox_org.org.convert_lead(converted_lead["Id"])

    refresh = mirror.refresh(sandbox_org.client())
    assert refresh.mode == "incremental" and refresh.calls == 2 and refresh.deleted == 1
    org_id = client.org_id
    found = _people_by_email(
        mirror,
        org_id,
        [
            "newcomer@example.org",
            "moved.address@example.org",
            changed_contact["Email"],
            deleted_contact["Email"],
            converted_lead["Email"],
        ],
    )
    assert new_id in found["newcomer@example.org"]
    assert changed_contact["Id"] in found["moved.address@example.org"]
    assert changed_contact["Id"] not in found.get(changed_contact["Email"].lower(), set())
    assert deleted_contact["Id"] not in found.get(deleted_contact["Email"].lower(), set())
    # The converted Lead stays in the mirror but is no candidate; its new Contact is.
    assert converted_lead["Id"] not in found.get(converted_lead["Email"].lower(), set())

    statuses = statuses_for(["Newcomer@example.org", converted_lead["Email"]])
    matches, unmatched = match_campaign_members(sandbox_org.client(), statuses, mirror)
    by_email = matches.set_index(matches["email_address"].str.lower())
    assert by_email.loc["newcomer@example.org", "salesforce_id"] == new_id
    assert by_email.loc[converted_lead["Email"].lower(), "salesforce_object"] == "Contact"
    assert unmatched.empty


def test_a_week_after_the_last_fill_the_mirror_is_filled_again(sandbox_org, mirror) -> None:
    first = mirror.refresh(sandbox_org.client())
    later = mirror.refresh(sandbox_org.client(), now=first.refreshed_at + pd.Timedelta(days=8))
    assert later.mode == "full" and later.rows == first.rows
    assert later.last_full_refresh_at == first.refreshed_at + pd.Timedelta(days=8)


def test_mirror_matching_is_identical_to_matching_on_a_direct_query(sandbox_org, mirror) -> None:
    """Today's rules on the same people: the mirror gives exactly what querying Salesforce gave."""
    summary = seed_people(sandbox_org.org, AUDIENCE, seed=7, coverage=1.0)
    client = sandbox_org.client()
    statuses = statuses_for(AUDIENCE + summary.mixed_case_duplicates + ["nobody@example.net"])
    via_mirror = match_campaign_members(client, statuses, mirror)
    direct = pd.DataFrame(
        [
            {
                "salesforce_id": r["Id"],
                "salesforce_object": sobject,
                "email": r["Email"],
                "created_date": r["CreatedDate"],
            }
            for sobject, soql in (
                ("Contact", "SELECT Id, Email, CreatedDate FROM Contact"),
                ("Lead", "SELECT Id, Email, CreatedDate FROM Lead WHERE IsConverted = false"),
            )
            for r in client.query_all(soql)
            if r.get("Email")
        ]
    )
    expected = match_members(statuses, direct)
    for got, want in zip(via_mirror, expected, strict=True):
        key = ["email_id"]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
        )
    assert (via_mirror[0]["candidate_count"] > 1).any()  # the several-candidates case is among them


def test_an_email_with_a_quote_matches_and_an_injection_attempt_matches_nobody(sandbox_org, mirror) -> None:
    client = sandbox_org.client()
    mirror.refresh(client)
    assert set(mirror.people_for(client.org_id, ["O'Brien@example.com"])["email"]) == {"o'brien@example.com"}
    assert mirror.people_for(client.org_id, ["x' OR Email != 'y", "%' OR Email LIKE '%", "%"]).empty


def test_rows_of_one_org_never_match_for_another(sandbox_org, mirror, pg_engine) -> None:
    client = sandbox_org.client()
    mirror.refresh(client)
    with SalesforceSandbox(pg_engine, schema=f"sf_other_{uuid.uuid4().hex[:8]}") as other:
        from campaign_pipeline.salesforce.resource import SalesforceClient

        other_client = SalesforceClient(other.client(), target="other sandbox org", is_sandbox=True)
        assert other_client.org_id != client.org_id
        refresh = mirror.refresh(other_client)
        assert refresh.mode == "full" and refresh.rows == 0
        assert mirror.people_for(other_client.org_id, AUDIENCE).empty
    assert len(mirror.people_for(client.org_id, AUDIENCE)) > 0


def test_matching_a_big_campaign_costs_the_same_reads_as_a_small_one(sandbox_org, mirror) -> None:
    mirror.refresh(sandbox_org.client())
    small, big = sandbox_org.client(), sandbox_org.client()
    match_campaign_members(small, statuses_for(AUDIENCE[:2]), mirror)
    many = [f"a.rather.long.mailbox.name.{n:05d}@a-long-subdomain.example.com" for n in range(3000)] + AUDIENCE
    matches, _ = match_campaign_members(big, statuses_for(many), mirror)
    assert small.stats.calls["read"] == big.stats.calls["read"] == 2
    assert len(matches) >= len(AUDIENCE) - 2


def test_accented_addresses_filled_by_a_bulk_query_match_as_a_direct_query_does(pg_engine, mirror) -> None:
    """Bulk results are UTF-8 CSV served without a charset: read as Latin-1 they would match nobody."""
    audience = ["Müller.Olga@Example.net", "chloé.novak@example.de", "Łukasz_1926@example.org", "zoë@example.com"]
    with SalesforceSandbox(pg_engine, schema=f"sf_accents_{uuid.uuid4().hex[:8]}") as org:
        seed_people(org, audience, seed=7, coverage=1.0)
        from campaign_pipeline.salesforce.resource import SalesforceClient

        client = SalesforceClient(org.client(), target="accents sandbox org", is_sandbox=True)
        assert mirror.refresh(client).mode == "full"
        # Straight after the fill (the next refresh's overlap would re-read these few through the REST API).
        filled = mirror.people_for(client.org_id, audience)
        assert set(filled["email"]) == {address.lower() for address in audience}
        assert set(mirror.people_for(client.org_id, ["MÜLLER.OLGA@example.NET"])["email"]) == {
            "müller.olga@example.net"
        }
        matches, unmatched = match_campaign_members(client, statuses_for(audience), mirror)
    assert unmatched.empty and len(matches) == len(audience)
