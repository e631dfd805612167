"""Person Accounts end to end over HTTPS: mirrored as person contacts, matched as Contacts, members on the person."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from simple_salesforce.exceptions import SalesforceError

from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox, seed_people
from campaign_pipeline.sandbox.salesforce_seed import SeedSummary

from .conftest import AUDIENCE, PROFILE, Org, statuses_for


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


# -- opt-out sync on Person Accounts: the flag goes on the Account, never on the read-only person contact ----------

OPT_OUT = PROFILE.model_copy(update={"matching": PROFILE.matching.model_copy(update={"sync_opt_out": True})})


def _flagged_people(org: SalesforceSandbox) -> set[tuple[str, str]]:
    """(sObject, email) of the business Contacts and Leads marked HasOptedOutOfEmail."""
    return {
        (sobject, p["Email"].lower())
        for sobject in ("Contact", "Lead")
        for p in org.records(sobject)
        if p["HasOptedOutOfEmail"] and not p.get("IsPersonAccount") and p.get("Email")
    }


def _opt_out_mix(org: SalesforceSandbox, summary: SeedSummary):
    """Statuses where two person accounts, two business contacts and the Leads among the audience unsubscribed."""
    people = _person_contacts(org)
    business = list(
        {c["Email"].lower(): c["Email"] for c in org.records("Contact") if not c["IsPersonAccount"] and c.get("Email")}
    )
    contact_emails = {c["Email"].lower() for c in org.records("Contact") if c.get("Email")}
    leads = [
        lead["Email"]
        for lead in org.records("Lead")
        if lead.get("Email") and not lead.get("IsConverted") and lead["Email"].lower() not in contact_emails
    ]
    unsubscribing = [*summary.person_accounts[:2], *business[:2], *leads[:1]]
    staying = [*summary.person_accounts[2:], *business[2:4]]
    statuses = statuses_for([*unsubscribing, *staying])
    gone = statuses["email_address"].isin(unsubscribing)
    statuses.loc[gone, "latest_status"] = "Unsubscribed"
    statuses.loc[gone, "was_unsubscribed"] = True
    return statuses, people, unsubscribing


def test_a_person_accounts_opt_out_lands_on_the_account_and_a_rerun_writes_nothing(person_org) -> None:
    org, summary = person_org
    statuses, people, unsubscribing = _opt_out_mix(org.org, summary)
    assert all(not a["PersonHasOptedOutOfEmail"] for a in people.values())
    flagged_before = _flagged_people(org.org)
    report = org.sync(statuses, OPT_OUT)
    assert report.failures.empty, report.failures.to_dict("records")

    marked_accounts = {a["Id"] for a in org.org.records("Account") if a.get("PersonHasOptedOutOfEmail")}
    assert marked_accounts == {people[e.lower()]["Id"] for e in summary.person_accounts[:2]}
    # The org carries the Account's flag to its person contact: Salesforce users see one person, opted out.
    contacts = {c["Id"]: c for c in org.org.records("Contact")}
    for email in summary.person_accounts:
        expected = email in summary.person_accounts[:2]
        assert contacts[people[email.lower()]["PersonContactId"]]["HasOptedOutOfEmail"] is expected
    newly = _flagged_people(org.org) - flagged_before
    assert newly == {("Contact", e.lower()) for e in unsubscribing[2:4]} | {("Lead", unsubscribing[4].lower())}

    accounts = report.outcomes["account_opt_out"]
    assert (accounts.updated, accounts.created) == (2, 0)
    assert report.outcomes["contact_opt_out"].updated == 2 and report.outcomes["lead_opt_out"].updated == 1
    ledger = org.ledger.load("account_opt_out", ["cmp1"])
    assert set(ledger["last_result"]) == {"ok"} and set(ledger["salesforce_id"]) == marked_accounts
    assert set(ledger["sync_key"]) == {f"cmp1|opt_out|{account}" for account in marked_accounts}

    writes_before = _writes(org.org)
    again = org.sync(statuses, OPT_OUT)
    assert again.write_calls == 0 and _writes(org.org) == writes_before
    assert again.outcomes["account_opt_out"].unchanged == 2


def test_a_person_accounts_opt_out_is_never_cleared_and_a_lost_answer_converges(person_org) -> None:
    from .test_lost_answers import run_losing

    org, summary = person_org
    statuses, people, _ = _opt_out_mix(org.org, summary)
    org.sync(statuses.assign(was_unsubscribed=False), OPT_OUT)  # Campaign, statuses and members first
    report = run_losing(org, statuses, OPT_OUT, r"^update \d+ Account record\(s\) via sObject Collections")
    outcome = report.outcomes["account_opt_out"]
    assert outcome.updated + outcome.failed == outcome.desired == 2
    # Salesforce carried the lost call out; the call is repeated (an update is idempotent) now or on the next run.
    assert org.sync(statuses, OPT_OUT).failures.empty
    marked = {a["Id"] for a in org.org.records("Account") if a.get("PersonHasOptedOutOfEmail")}
    assert marked == {people[e.lower()]["Id"] for e in summary.person_accounts[:2]}

    # Someone in Salesforce clears one person's opt-out; the member resubscribes in Mailchimp: nothing un-sets it,
    # and nothing sets it again either (the ledger holds the write).
    cleared = sorted(marked)[0]
    org.org.client().Account.update(cleared, {"PersonHasOptedOutOfEmail": False})
    resubscribed = statuses.assign(was_unsubscribed=False, latest_status="Opened")
    for frame in (statuses, resubscribed):
        again = org.sync(frame, OPT_OUT)
        assert again.failures.empty
        # The resubscribed frame has no opt-out to write, so no Account step at all; the first is unchanged.
        assert [o.updated for name, o in again.outcomes.items() if name == "account_opt_out"] in ([0], [])
    assert {a["Id"] for a in org.org.records("Account") if a.get("PersonHasOptedOutOfEmail")} == marked - {cleared}


def test_the_org_refuses_writing_a_person_contact_so_the_contact_opt_out_of_before_would_fail(person_org) -> None:
    from campaign_pipeline.core.opt_out_records import desired_opt_outs, opt_outs_of
    from campaign_pipeline.salesforce.engine import CONTACT_OPT_OUT_KIND, DesiredRecords, sync_desired_records

    org, summary = person_org
    people = _person_contacts(org.org)
    person_contact = people[summary.person_accounts[0].lower()]["PersonContactId"]
    business = next(c["Id"] for c in org.org.records("Contact") if not c["IsPersonAccount"])
    # As a real org answers (help article 005305352): a person contact's fields are the person account's to write.
    sf = org.org.client()
    with pytest.raises(SalesforceError) as refused:
        sf.Contact.update(person_contact, {"HasOptedOutOfEmail": True})
    assert refused.value.status == 400
    assert refused.value.content[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
    assert sf.Contact.update(business, {"HasOptedOutOfEmail": True}) == 204
    # The opt-out of before: matches without the person account, HasOptedOutOfEmail on the person contact.
    statuses, _, _ = _opt_out_mix(org.org, summary)
    matches, _ = match_campaign_members(org.client(), statuses)
    before = opt_outs_of(desired_opt_outs(statuses, matches.drop(columns="person_account_id")), "Contact")
    assert person_contact in set(before["Id"])
    report = sync_desired_records(
        org.client(), org.ledger, [DesiredRecords(CONTACT_OPT_OUT_KIND, before)], OPT_OUT.sync
    )
    refusals = report.failures[report.failures["error_code"] == "INSUFFICIENT_ACCESS_OR_READONLY"]
    assert len(refusals) == 2 and report.outcomes["contact_opt_out"].updated == 2  # the two business contacts
    assert not org.org.client().Contact.get(person_contact)["HasOptedOutOfEmail"]


def test_a_mirror_of_before_refills_its_contacts_to_learn_the_person_accounts(person_org, mirror, pg_engine) -> None:
    import sqlalchemy as sa

    org, summary = person_org
    client = org.client()
    mirror.refresh(client)
    # The mirror as it was before it kept person account Ids.
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{mirror.schema}".salesforce_people DROP COLUMN account_id'))
    upgraded = PeopleMirror(pg_engine, schema=mirror.schema)
    refresh = upgraded.refresh(client)
    assert refresh.mode == "full" and refresh.person_accounts
    found = upgraded.people_for(client.org_id, summary.person_accounts)
    people = _person_contacts(org.org)
    assert dict(zip(found["salesforce_id"], found["person_account_id"], strict=True)) == {
        people[e.lower()]["PersonContactId"]: people[e.lower()]["Id"] for e in summary.person_accounts
    }
    assert upgraded.refresh(client).mode == "incremental"
