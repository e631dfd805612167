"""Activity and notes modes on an org with Person Accounts, over HTTPS: Tasks, Notes and Files on the person contact."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox

from .conftest import ActivityOrg
from .frames import content, events, recipients, report

AUDIENCE = ("ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com")
PERSON_ACCOUNTS = ("ann@example.com", "dan@example.com")
HTML = "<html><body><p>Spring offer</p></body></html>"


@pytest.fixture
def person_activity_org(pg_engine: sa.Engine) -> Iterator[tuple[ActivityOrg, dict[str, str]]]:
    """An org with Person Accounts: ann and dan are person accounts, bob a Lead, cat a Contact of a business."""
    suffix = uuid.uuid4().hex[:8]
    with SalesforceSandbox(
        pg_engine, schema=f"activity_person_{suffix}", faults=SalesforceFaults(seed=5), person_accounts=True
    ) as org:
        sf = org.client()
        accounts, person_ids = {}, {}
        for address in PERSON_ACCOUNTS:
            accounts[address] = sf.Account.create({"LastName": address.split("@")[0], "PersonEmail": address})["id"]
            person_ids[address] = sf.Account.get(accounts[address])["PersonContactId"]
        person_ids["bob@example.com"] = sf.Lead.create(
            {"LastName": "bob", "Company": "Example Ltd", "Email": "bob@example.com"}
        )["id"]
        business = sf.Account.create({"Name": "Example Ltd"})["id"]
        person_ids["cat@example.com"] = sf.Contact.create(
            {"LastName": "cat", "Email": "cat@example.com", "AccountId": business}
        )["id"]
        activity = ActivityOrg(
            org,
            SyncLedger(pg_engine, schema=f"activity_person_ledger_{suffix}"),
            PeopleMirror(pg_engine, schema=f"activity_person_mirror_{suffix}"),
            person_ids,
        )
        yield activity, accounts


def _events():
    return events(
        ("ann@example.com", "open", "2026-03-02 15:05"),
        ("ann@example.com", "click", "2026-03-02 15:06", "https://example.com/offer"),
        ("bob@example.com", "open", "2026-03-03 09:30"),
        ("cat@example.com", "open", "2026-03-03 10:30"),
        ("dan@example.com", "open", "2026-03-04 11:00"),
    )


def test_activity_tasks_go_on_the_person_contact_and_a_rerun_writes_nothing(person_activity_org) -> None:
    org, accounts = person_activity_org
    profile = SyncProfile.model_validate({"mode": "activity"})
    first = org.sync(profile, recipients(*AUDIENCE), _events(), report())
    assert first.failures.empty, first.failures
    who = sorted(task["WhoId"] for task in org.records("Task"))
    ids = org.person_ids
    assert who == sorted([ids["ann@example.com"]] * 2 + [ids[a] for a in AUDIENCE if a != "ann@example.com"])
    contacts = {c["Id"]: c for c in org.records("Contact")}
    for address in PERSON_ACCOUNTS:
        assert contacts[ids[address]]["IsPersonAccount"] and contacts[ids[address]]["AccountId"] == accounts[address]

    again = org.sync(profile, recipients(*AUDIENCE), _events(), report())
    assert again.write_calls == 0 and again.outcomes["task"].unchanged == 5


def test_notes_and_files_link_to_the_person_contact(person_activity_org) -> None:
    org, _ = person_activity_org
    profile = SyncProfile.model_validate({"mode": "notes"})
    run = org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert run.failures.empty, run.failures
    notes = {note["Id"] for note in org.records("ContentNote")}
    # Besides its owner (a User, 005), each note is linked to its person: for a person account, the person contact.
    linked = {
        link["LinkedEntityId"]
        for link in org.records("ContentDocumentLink")
        if link["ContentDocumentId"] in notes and not link["LinkedEntityId"].startswith("005")
    }
    assert linked == set(org.person_ids.values())
    first_published = {v["FirstPublishLocationId"] for v in org.records("ContentVersion") if v["FileType"] == "HTML"}
    assert first_published == set(org.person_ids.values())

    again = org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert again.write_calls == 0
