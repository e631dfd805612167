"""Person Accounts end to end over HTTPS: mirrored as person contacts, matched as Contacts, members on the person."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox, seed_people
from campaign_pipeline.sandbox.salesforce_seed import SeedSummary

from .conftest import AUDIENCE, Org, statuses_for


@pytest.fixture
def person_org(pg_engine) -> Iterator[tuple[Org, SeedSummary]]:
    suffix = uuid.uuid4().hex[:8]
    schema = f"sf_person_{suffix}"
    with SalesforceSandbox(pg_engine, schema=schema, faults=SalesforceFaults(seed=3), person_accounts=True) as org:
        summary = seed_people(org, AUDIENCE, seed=7, coverage=1.0, person_account_share=0.5)
        yield Org(org, SyncLedger(pg_engine, schema=f"ledger_person_{suffix}")), summary


@pytest.fixture
def mirror(pg_engine) -> PeopleMirror:
    return PeopleMirror(pg_engine, schema=f"mirror_person_{uuid.uuid4().hex[:8]}")


def _person_contacts(org: SalesforceSandbox) -> dict[str, dict]:
    """Each person account by its PersonEmail (lower case): the Account and the Id of its person contact."""
    return {a["PersonEmail"].lower(): a for a in org.records("Account") if a.get("IsPersonAccount")}


def _writes(org: SalesforceSandbox) -> int:
    return sum(
        1
        for method, path, kind in org.call_log
        if kind in ("write", "bulk") and method != "GET" and "/jobs/query" not in path
    )


def test_person_accounts_are_mirrored_as_person_contacts_and_win_over_a_lead(person_org, mirror) -> None:
    org, summary = person_org
    people = _person_contacts(org.org)
    assert len(people) == len(summary.person_accounts) >= 3
    # A Lead with a person account's address: the person account is a Contact, so it wins.
    contested = summary.person_accounts[0]
    org.org.client().Lead.create({"LastName": "Later", "Company": "Example Ltd", "Email": contested.upper()})
    client = org.client()
    statuses = statuses_for(summary.person_accounts)
    matches, unmatched = match_campaign_members(client, statuses, mirror)

    refresh = mirror.last_refresh
    assert refresh is not None and refresh.person_accounts and refresh.mode == "full"
    # One describe (Contact: are there Person Accounts?) and one Bulk job per object, as without them.
    assert refresh.calls == 7
    assert unmatched.empty
    by_email = matches.set_index("email_address")
    assert (by_email["salesforce_object"] == "Contact").all()
    assert by_email["salesforce_id"].to_dict() == {e: people[e.lower()]["PersonContactId"] for e in by_email.index}
    assert by_email.loc[contested, "candidate_count"] == 2
    assert mirror.person_accounts_among(client.org_id, matches["salesforce_id"]) == len(people)

    # A new person account, and an address change on another, reach the mirror incrementally.
    sf = org.org.client()
    new_id = sf.Account.create({"FirstName": "Nia", "LastName": "New", "PersonEmail": "nia.new@example.org"})["id"]
    moved = summary.person_accounts[1]
    sf.Account.update(people[moved.lower()]["Id"], {"PersonEmail": "moved.person@example.org"})
    again = mirror.refresh(org.client())
    assert again.mode == "incremental" and again.person_accounts and again.calls == 2
    found = mirror.people_for(client.org_id, ["nia.new@example.org", "moved.person@example.org", moved])
    assert dict(zip(found["email"], found["salesforce_id"], strict=True)) == {
        "nia.new@example.org": sf.Account.get(new_id)["PersonContactId"],
        "moved.person@example.org": people[moved.lower()]["PersonContactId"],
    }


def test_an_org_without_person_accounts_mirrors_as_before(sandbox_org, mirror) -> None:
    refresh = mirror.refresh(sandbox_org.client())
    assert not refresh.person_accounts
    assert "person_accounts" not in refresh.metadata()
    assert (
        mirror.person_accounts_among(sandbox_org.client().org_id, [c["Id"] for c in sandbox_org.org.records("Contact")])
        == 0
    )


def test_campaign_sync_puts_members_on_person_contacts_and_a_rerun_writes_nothing(person_org) -> None:
    org, summary = person_org
    people = _person_contacts(org.org)
    business = [e for e in AUDIENCE if e.lower() not in people][:3]
    statuses = statuses_for([*summary.person_accounts, *business])
    report = org.sync(statuses)
    assert report.failures.empty, report.failures
    members = {m["ContactId"]: m for m in org.org.records("CampaignMember") if m.get("ContactId")}
    for account in people.values():
        member = members[account["PersonContactId"]]
        # Salesforce fills the member's Account from its Contact: the person account.
        assert member["AccountId"] == account["Id"] and member.get("LeadId") is None
    assert len(org.org.records("CampaignMember")) == len(statuses)

    writes_before = _writes(org.org)
    again = org.sync(statuses)
    assert again.write_calls == 0 and _writes(org.org) == writes_before
