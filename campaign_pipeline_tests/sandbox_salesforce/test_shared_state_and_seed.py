"""One org across instances and restarts (state in Postgres), concurrent schema creation, and seeding."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from simple_salesforce import format_soql

from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox, seed_people
from campaign_pipeline.sandbox.salesforce_store import SalesforceStore


def test_two_instances_on_one_engine_are_one_org(pg_engine: sa.Engine):
    schema = "sandbox_salesforce_shared"
    with SalesforceSandbox(pg_engine, schema=schema) as first, SalesforceSandbox(pg_engine, schema=schema) as second:
        first.reset()
        one, two = first.client(), second.client()
        contact_id = one.Contact.create({"LastName": "Shared", "Email": "shared@example.com"})["id"]
        assert two.Contact.get(contact_id)["Email"] == "shared@example.com"
        # A session issued by one instance is valid on the other (sessions live in Postgres).
        cross = second.requests_session().get(
            f"{second.instance_url}/services/data/v62.0/sobjects/Contact/{contact_id}",
            headers={"Authorization": f"Bearer {first.session_id}"},
        )
        assert cross.status_code == 200
        # Query cursors are shared too: a page opened on one instance continues on the other.
        two.bulk2.Contact.insert(records=[{"LastName": f"L{i}"} for i in range(2100)], wait=0.01)
        page = one.query("SELECT Id FROM Contact")
        rest = two.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        assert len(page["records"]) + len(rest["records"]) == 2101 and rest["done"] is True
        # The API quota is the org's, counted across instances.
        assert first.api_calls_used() == second.api_calls_used() >= 5
        # A duplicate campaign member is refused whichever instance the first one went through.
        campaign_id = one.Campaign.create({"Name": "C"})["id"]
        one.CampaignMember.create({"CampaignId": campaign_id, "ContactId": contact_id})
        results = two.restful(
            "composite/sobjects",
            method="POST",
            json={
                "records": [
                    {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign_id, "ContactId": contact_id}
                ]
            },
        )
        assert results[0]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


def test_state_survives_a_restart(pg_engine: sa.Engine):
    schema = "sandbox_salesforce_restart"
    with SalesforceSandbox(pg_engine, schema=schema) as org:
        org.reset()
        org.client().Campaign.create({"Name": "Before restart", "Mailchimp_Campaign_Id__c": "mc-9"})
    with SalesforceSandbox(pg_engine, schema=schema) as org:
        found = org.client().Campaign.get_by_custom_id("Mailchimp_Campaign_Id__c", "mc-9")
        assert found["Name"] == "Before restart"


def test_schema_creation_is_safe_when_processes_start_together(pg_engine: sa.Engine):
    schema = "sandbox_salesforce_race"
    with pg_engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    errors: list[BaseException] = []

    def create() -> None:
        try:
            SalesforceStore(pg_engine, schema).ensure_schema()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert SalesforceStore(pg_engine, schema).records("Contact") == []


AUDIENCE = [f"member{i}@example.com" for i in range(200)] + ["o'neil@example.com", "d'arcy.smith@example.org"]


def test_seed_covers_the_audience_with_the_awkward_cases(org):
    summary = seed_people(org, AUDIENCE, seed=7, coverage=0.6)
    assert len(summary.covered_emails) == round(len(AUDIENCE) * 0.6)
    contacts, leads = org.records("Contact"), org.records("Lead")
    assert summary.contacts == len(contacts) and summary.leads == len(leads)
    contact_emails = [c["Email"] for c in contacts]
    # Mixed-case duplicates: two Contacts whose addresses differ only in case.
    for email in summary.mixed_case_duplicates:
        same = [e for e in contact_emails if e.lower() == email.lower()]
        assert len(same) == 2 and same[0] != same[1]
    # Converted Leads exist and are flagged; one points at its Contact.
    converted = [lead for lead in leads if lead["IsConverted"]]
    assert len(converted) == summary.converted_leads == 2
    assert any(lead["ConvertedContactId"] for lead in converted)
    # An address matching both a Contact and a Lead.
    for email in summary.contact_and_lead:
        assert email in contact_emails and email in [lead["Email"] for lead in leads]
    # Addresses with quotes are in the org and findable with format_soql.
    assert set(summary.quoted) == {"o'neil@example.com", "d'arcy.smith@example.org"}
    sf = org.client()
    found = sf.query(format_soql("SELECT Id FROM Contact WHERE Email = {}", "O'Neil@example.com"))
    assert found["totalSize"] == 1
    covered = {e.lower() for e in summary.covered_emails}
    assert {e.lower() for e in contact_emails + [lead["Email"] for lead in leads]} == covered


def test_seed_is_idempotent_and_deterministic(org, pg_engine):
    first = seed_people(org, AUDIENCE, seed=7)
    before = org.records("Contact") + org.records("Lead")
    again = seed_people(org, list(reversed(AUDIENCE)), seed=7)
    assert again.already_seeded is True and again.covered_emails == first.covered_emails
    assert org.records("Contact") + org.records("Lead") == before
    org.reset()
    replay = seed_people(pg_engine, list(reversed(AUDIENCE)), seed=7, schema=org.store.schema)
    assert replay.covered_emails == first.covered_emails
    emails = lambda rows: [(r["Email"], r.get("IsConverted")) for r in rows]  # noqa: E731
    assert emails(org.records("Contact") + org.records("Lead")) == emails(before)


def test_seed_adds_a_quoted_address_when_the_audience_has_none(org):
    summary = seed_people(org, [f"m{i}@example.com" for i in range(20)], coverage=0.5)
    assert summary.extra_emails == ["o'brien@example.com"]
    assert "o'brien@example.com" in [c["Email"] for c in org.records("Contact")]


CHILD_SCRIPT = """
import json, sys
import sqlalchemy as sa
from simple_salesforce import Salesforce
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox

url, schema, parent_session = sys.argv[1], sys.argv[2], sys.argv[3]
with SalesforceSandbox(sa.create_engine(url), schema=schema) as org:
    created = org.client().Contact.create({"LastName": "Child", "Email": "child@example.com"})
    with_parent_session = Salesforce(
        instance_url=org.instance_url, session_id=parent_session, session=org.requests_session(), version=org.api_version
    )
    seen = with_parent_session.query("SELECT Id, LastName FROM Contact WHERE LastName = 'Parent'")["records"]
    print(json.dumps({"created": created["id"], "seen": [r["Id"] for r in seen]}))
"""


def test_a_second_process_sees_and_changes_the_same_org(pg_url: str, pg_engine: sa.Engine):
    import json
    import subprocess
    import sys

    schema = "sandbox_salesforce_processes"
    with SalesforceSandbox(pg_engine, schema=schema) as org:
        org.reset()
        parent_id = org.client().Contact.create({"LastName": "Parent"})["id"]
        child = subprocess.run(
            [sys.executable, "-c", CHILD_SCRIPT, pg_url, schema, org.session_id],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        reported = json.loads(child.stdout.strip().splitlines()[-1])
        assert reported["seen"] == [parent_id]
        assert org.client().Contact.get(reported["created"])["Email"] == "child@example.com"


def test_concurrent_writers_cannot_make_a_duplicate_member(org):
    setup = org.client()
    campaign_id = setup.Campaign.create({"Name": "Race"})["id"]
    org.store.insert_raw("Contact", [{"LastName": f"P{i}"} for i in range(40)])
    records = [
        {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign_id, "ContactId": contact["Id"]}
        for contact in org.records("Contact")
    ]
    outcomes: list[list[dict]] = []
    failures: list[BaseException] = []

    def add_everyone() -> None:
        try:
            client = org.client()
            outcomes.append(client.restful("composite/sobjects", method="POST", json={"records": records}))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=add_everyone) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    results = [result for outcome in outcomes for result in outcome]
    assert sum(r["success"] for r in results) == 40
    assert {r["errors"][0]["statusCode"] for r in results if not r["success"]} == {"DUPLICATE_VALUE"}
    assert len(org.records("CampaignMember")) == 40
