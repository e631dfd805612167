"""End to end over HTTPS: the engine with the real simple-salesforce client against the sandbox org."""

from __future__ import annotations

import pandas as pd
import pytest

from campaign_pipeline.core.diff import RESULT_OK
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import SalesforceFieldError, sobject_collections, sync_desired_records

from .conftest import AUDIENCE, PROFILE, statuses_for
from .frames import campaign_report


def _members_by_person(org) -> dict[str, dict]:
    return {m.get("ContactId") or m["LeadId"]: m for m in org.records("CampaignMember")}


def _writes(org) -> int:
    # A Bulk query job (the people mirror's fill) is created by POST but writes nothing.
    return sum(
        1
        for method, path, kind in org.call_log
        if kind in ("write", "bulk") and method != "GET" and "/jobs/query" not in path
    )


def _state(org) -> tuple:
    """What a user sees in the org: Campaigns, statuses per Campaign, members, independent of Ids."""
    campaigns = sorted((c["Name"], c.get("NumberSent")) for c in org.records("Campaign"))
    statuses = sorted((s["Label"], bool(s["HasResponded"])) for s in org.records("CampaignMemberStatus"))
    members = sorted(
        (m.get("ContactId") or m["LeadId"], m["Status"], m.get("Total_Opens__c")) for m in org.records("CampaignMember")
    )
    return campaigns, statuses, members


def test_first_sync_creates_exactly_the_expected_records(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:6], status="Opened")
    statuses.loc[0, "latest_status"] = "Clicked"
    statuses.loc[0, "total_opens"] = 3
    report = sandbox_org.sync(statuses)
    org = sandbox_org.org

    assert report.stopped is None and report.failures.empty
    [campaign] = org.records("Campaign")
    assert campaign["Name"] == "Spring offer" and campaign["NumberSent"] == 6
    assert campaign["Open_Rate__c"] == pytest.approx(100.0)  # a fraction of 1.0 lands as 100 %
    labels = {s["Label"]: s["HasResponded"] for s in org.records("CampaignMemberStatus")}
    assert {k: labels[k] for k in ("Sent", "Opened", "Clicked", "Bounced", "Unsubscribed")} == {
        "Sent": False,
        "Opened": True,
        "Clicked": True,
        "Bounced": False,
        "Unsubscribed": False,
    }
    matched = report.outcomes["campaign_member"].desired
    members = org.records("CampaignMember")
    assert len(members) == matched == report.outcomes["campaign_member"].created >= 5
    assert all(m["CampaignId"] == campaign["Id"] for m in members)
    assert sorted(m["Status"] for m in members).count("Clicked") == 1
    assert max(m["Total_Opens__c"] for m in members) == 3
    # One call each: the Campaign, its new statuses (Sent already exists on a new Campaign), the members.
    assert report.write_calls == 3
    ledger = sandbox_org.ledger.load("campaign_member", ["cmp1"])
    assert (ledger["last_result"] == RESULT_OK).all() and ledger["salesforce_id"].str.startswith("00v").all()


def test_second_sync_with_no_new_activity_makes_zero_write_calls(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:8])
    sandbox_org.sync(statuses)
    writes_before = _writes(sandbox_org.org)
    report = sandbox_org.sync(statuses)
    assert report.write_calls == 0
    assert _writes(sandbox_org.org) == writes_before
    assert report.total("created") == report.total("updated") == 0
    assert report.total("unchanged") == report.total("desired")


def test_new_activity_updates_only_the_changed_members(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:8])
    sandbox_org.sync(statuses)
    before = _members_by_person(sandbox_org.org)
    later = statuses.copy()
    later.loc[2, "latest_status"] = "Clicked"
    later.loc[2, "total_clicks"] = 1
    later.loc[2, "unique_clicks"] = 1
    later.loc[2, "last_clicked_url"] = "https://example.com/new"
    report = sandbox_org.sync(later)
    assert report.outcomes["campaign_member"].updated == 1
    assert report.outcomes["campaign_member"].created == 0
    assert report.outcomes["campaign_member_status"].updated == 0
    after = _members_by_person(sandbox_org.org)
    changed = [person for person in after if after[person]["Status"] != before[person]["Status"]]
    assert len(changed) == 1 and after[changed[0]]["Last_Clicked_URL__c"] == "https://example.com/new"
    # Campaign totals changed too (unique clicks are not mapped, so only the member write counts here).
    assert report.write_calls == 1


def test_a_per_record_failure_is_recorded_and_succeeds_on_the_next_run(sandbox_org) -> None:
    sandbox_org.sync(statuses_for(AUDIENCE[:4]))
    statuses = statuses_for(AUDIENCE[:16])
    sandbox_org.org.faults.lock_error_rate = 0.4
    report = sandbox_org.sync(statuses, client=sandbox_org.client(max_retries=0))
    assert report.outcomes["campaign_member"].failed > 0, "the fault rate should have failed some members"
    assert set(report.failures["error_code"]) == {"UNABLE_TO_LOCK_ROW"}
    stored = sandbox_org.ledger.failures()
    assert sorted(stored["sync_key"]) == sorted(report.failures["sync_key"])
    assert stored["error_message"].str.len().gt(0).all()
    members_before = len(sandbox_org.org.records("CampaignMember"))

    sandbox_org.org.faults.lock_error_rate = 0.0
    again = sandbox_org.sync(statuses)
    assert again.failures.empty and sandbox_org.ledger.failures().empty
    # Only the failed keys went out again; everything written before stayed unchanged.
    assert again.total("created") + again.total("updated") == len(report.failures)
    assert len(sandbox_org.org.records("CampaignMember")) == members_before + report.outcomes["campaign_member"].failed


def test_lock_errors_5xx_and_an_expired_session_are_survived(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:12])
    client = sandbox_org.client(max_retries=8)
    sandbox_org.org.expire_session()  # the client still holds the old session
    sandbox_org.org.faults.lock_error_rate = 0.3
    sandbox_org.org.faults.fail_next_requests = 2
    report = sandbox_org.sync(statuses, client=client)
    assert report.failures.empty, report.failures.to_dict("records")
    assert client.stats.reauths == 1 and report.retries >= 2
    assert len(sandbox_org.org.records("CampaignMember")) == report.outcomes["campaign_member"].desired


class Crash(Exception):
    pass


def test_a_crash_between_batches_then_a_rerun_equals_one_clean_run(sandbox_org, monkeypatch, pg_engine) -> None:
    statuses = statuses_for(AUDIENCE[:20])
    monkeypatch.setattr(sobject_collections, "COLLECTION_SIZE", 4)
    real_record = sandbox_org.ledger.record_results
    calls = {"n": 0}

    def crash_after_sending_second_member_batch(kind, results):
        if kind == "campaign_member" and (results["last_result"] == RESULT_OK).any():
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash("process killed after the batch was sent, before it was recorded")
        return real_record(kind, results)

    monkeypatch.setattr(sandbox_org.ledger, "record_results", crash_after_sending_second_member_batch)
    with pytest.raises(Crash):
        sandbox_org.sync(statuses)
    monkeypatch.setattr(sandbox_org.ledger, "record_results", real_record)
    rerun = sandbox_org.sync(statuses)
    assert rerun.failures.empty
    pending = sandbox_org.ledger.load("campaign_member", ["cmp1"])
    assert (pending["last_result"] == RESULT_OK).all()
    crashed_state = _state(sandbox_org.org)

    # The same sync, once, without a crash, in a fresh org.
    from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox, seed_people

    from .conftest import Org, SyncLedger

    with SalesforceSandbox(pg_engine, schema="sf_test_clean_run") as clean_org:
        clean_org.reset()
        seed_people(clean_org, AUDIENCE, seed=7, coverage=1.0)
        clean = Org(clean_org, SyncLedger(pg_engine, schema="ledger_test_clean_run"))
        clean.sync(statuses)
        assert _state(clean_org)[:2] == crashed_state[:2]
        assert len(_state(clean_org)[2]) == len(crashed_state[2])
        assert sorted((s, o) for _, s, o in _state(clean_org)[2]) == sorted((s, o) for _, s, o in crashed_state[2])


def test_a_crash_after_creating_the_campaign_does_not_duplicate_it(sandbox_org, monkeypatch) -> None:
    statuses = statuses_for(AUDIENCE[:3])
    real_record = sandbox_org.ledger.record_results

    def crash_on_campaign(kind, results):
        if kind == "campaign":
            raise Crash("killed right after the Campaign was created")
        return real_record(kind, results)

    monkeypatch.setattr(sandbox_org.ledger, "record_results", crash_on_campaign)
    with pytest.raises(Crash):
        sandbox_org.sync(statuses)
    monkeypatch.setattr(sandbox_org.ledger, "record_results", real_record)
    assert sandbox_org.ledger.load("campaign")["last_result"].tolist() == ["pending"]
    sandbox_org.sync(statuses)
    assert len(sandbox_org.org.records("Campaign")) == 1
    assert len(sandbox_org.org.records("CampaignMember")) == 3


def test_an_email_with_a_quote_is_matched_and_synced(sandbox_org) -> None:
    statuses = statuses_for(["o'brien@example.com"])
    report = sandbox_org.sync(statuses)
    assert report.outcomes["campaign_member"].created == 1


def test_bulk_path_is_taken_above_the_threshold_and_is_correct(sandbox_org) -> None:
    profile = PROFILE.model_copy(update={"sync": PROFILE.sync.model_copy(update={"bulk_threshold": 5})})
    statuses = statuses_for(AUDIENCE[:20])
    statuses.loc[3, "latest_status"] = "Clicked"
    report = sandbox_org.sync(statuses, profile)
    assert report.outcomes["campaign_member"].api == "bulk"
    assert report.failures.empty, report.failures.to_dict("records")
    bulk_paths = [path for method, path, kind in sandbox_org.org.call_log if kind == "bulk"]
    assert any(path.endswith("/jobs/ingest") for path in bulk_paths)
    members = sandbox_org.org.records("CampaignMember")
    assert len(members) == report.outcomes["campaign_member"].created == report.outcomes["campaign_member"].desired
    assert sorted(m["Status"] for m in members).count("Clicked") == 1
    ledger = sandbox_org.ledger.load("campaign_member", ["cmp1"])
    assert set(ledger["salesforce_id"]) == {m["Id"] for m in members}
    # Bulk update of one changed member, then nothing.
    statuses.loc[4, "total_opens"] = 9
    update = sandbox_org.sync(
        statuses, profile.model_copy(update={"sync": profile.sync.model_copy(update={"bulk_threshold": 1})})
    )
    assert update.outcomes["campaign_member"].updated == 1 and update.outcomes["campaign_member"].api == "bulk"
    assert sorted(m.get("Total_Opens__c") for m in sandbox_org.org.records("CampaignMember"))[-1] == 9
    assert sandbox_org.sync(statuses, profile).write_calls == 0


def test_missing_mapped_field_fails_before_any_write_naming_the_field(sandbox_org) -> None:
    profile = SyncProfile.model_validate({"field_mapping": {"campaign_member": {"total_opens": "Opens_Count__c"}}})
    with pytest.raises(SalesforceFieldError, match=r"CampaignMember\.Opens_Count__c does not exist"):
        sandbox_org.sync(statuses_for(AUDIENCE[:3]), profile)
    assert _writes(sandbox_org.org) == 0


def test_api_budget_and_request_limit_stop_cleanly_and_the_next_run_finishes(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:10])
    # Matching has its own client (its asset's); this budget ends the push after the Campaign, before the members.
    report = sandbox_org.sync(statuses, client=sandbox_org.client(api_call_budget=6))
    assert report.stopped and "budget of 6" in report.stopped
    assert sandbox_org.ledger.load("campaign")["last_result"].tolist() == ["ok"]

    desired = sandbox_org.desired(statuses)
    sandbox_org.org.faults.request_limit_exceeded = True
    limited = sync_desired_records(sandbox_org.client(), sandbox_org.ledger, desired, PROFILE.sync)
    assert limited.stopped and "REQUEST_LIMIT_EXCEEDED" in limited.stopped

    sandbox_org.org.faults.request_limit_exceeded = False
    finished = sandbox_org.sync(statuses)
    assert finished.stopped is None and finished.failures.empty
    assert len(sandbox_org.org.records("CampaignMember")) == finished.outcomes["campaign_member"].desired
    assert len(sandbox_org.org.records("Campaign")) == 1


def test_org_usage_past_the_stop_fraction_stops_before_the_quota(sandbox_org) -> None:
    sandbox_org.org.daily_api_limit = 40
    report = sandbox_org.sync(statuses_for(AUDIENCE[:10]), client=sandbox_org.client(limit_usage_stop_fraction=0.1))
    assert report.stopped and "daily API requests" in report.stopped


PREVIEW = PROFILE.model_copy(update={"sync": PROFILE.sync.model_copy(update={"preview_only": True})})
SOBJECTS = ("Campaign", "CampaignMemberStatus", "CampaignMember")


def _ledger_rows(sandbox_org) -> dict[str, list]:
    kinds = ("campaign", "campaign_member_status", "campaign_member")
    return {kind: sandbox_org.ledger.load(kind, ["cmp1"]).to_dict("records") for kind in kinds}


def _preview_then_real(sandbox_org, statuses) -> None:
    """A preview changes neither the ledger nor the org, and says per kind exactly what the real run then does."""
    ledger_before = _ledger_rows(sandbox_org)
    org_before = {sobject: len(sandbox_org.org.records(sobject)) for sobject in SOBJECTS}
    preview = sandbox_org.sync(statuses, PREVIEW)
    assert preview.write_calls == 0
    assert _ledger_rows(sandbox_org) == ledger_before
    assert {sobject: len(sandbox_org.org.records(sobject)) for sobject in SOBJECTS} == org_before
    real = sandbox_org.sync(statuses)
    for name, planned in preview.outcomes.items():
        done = real.outcomes[name]
        said = (planned.to_create, planned.to_update, planned.unchanged, planned.to_fail)
        assert said == (done.created, done.updated, done.unchanged, done.failed), name
        assert sum(said) == planned.desired, name
    assert len(preview.changes) == preview.total("to_create") + preview.total("to_update")
    return preview


def test_preview_writes_nothing_and_counts_exactly_what_the_real_run_writes(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:5])
    first = _preview_then_real(sandbox_org, statuses)
    # A new Campaign: Salesforce makes its Sent status itself, so the preview counts it adopted, not created.
    assert first.outcomes["campaign_member_status"].to_create == 4
    assert first.outcomes["campaign_member_status"].unchanged == 1
    assert set(first.changes["action"]) == {"create"}

    later = statuses_for(AUDIENCE[:10])
    later.loc[[0, 1], "latest_status"] = "Clicked"
    second = _preview_then_real(sandbox_org, later)
    assert second.outcomes["campaign_member"].to_create >= 1
    assert second.outcomes["campaign_member"].to_update >= 2
    assert {"create", "update"} <= set(second.changes["action"])


def test_campaign_totals_mode_writes_only_the_campaign_and_automation_sends_say_approximate(sandbox_org) -> None:
    profile = SyncProfile.model_validate(
        {"mode": "campaign_totals", "field_mapping": {"campaign": {"delivered": "Emails_Delivered__c"}}}
    )
    statuses = statuses_for(AUDIENCE[:5], campaign_id="auto1", exact=False)
    report = sandbox_org.sync(statuses, profile, report_frame=campaign_report("auto1", campaign_type="automation"))
    # The hierarchy's parent step runs first; this report names no automation workflow, so there is no parent.
    assert list(report.outcomes) == ["parent_campaign", "campaign"]
    assert report.outcomes["parent_campaign"].desired == 0
    [campaign] = sandbox_org.org.records("Campaign")
    assert campaign["Emails_Delivered__c"] == 5
    assert "approximate" in campaign["Description"]
    assert not sandbox_org.org.records("CampaignMember")


def test_external_id_profile_upserts_campaign_and_members(sandbox_org) -> None:
    profile = SyncProfile.model_validate(
        {
            "field_mapping": {
                "campaign_key_field": "Mailchimp_Campaign_Id__c",
                "campaign_member_key_field": "Mailchimp_Key__c",
            }
        }
    )
    statuses = statuses_for(AUDIENCE[:6])
    report = sandbox_org.sync(statuses, profile)
    assert report.failures.empty
    [campaign] = sandbox_org.org.records("Campaign")
    assert campaign["Mailchimp_Campaign_Id__c"] == "cmp1"
    members = sandbox_org.org.records("CampaignMember")
    assert {m["Mailchimp_Key__c"] for m in members} == set(sandbox_org.ledger.load("campaign_member")["sync_key"])
    assert sandbox_org.sync(statuses, profile).write_calls == 0


def test_matching_contact_over_lead_skips_converted_and_picks_oldest(sandbox_org, pg_engine) -> None:
    from campaign_pipeline.sandbox.salesforce_api import seed_people

    summary = seed_people(sandbox_org.org, AUDIENCE, seed=7, coverage=1.0)  # already seeded: returns the plan
    client = sandbox_org.client()
    cases = summary.contact_and_lead + summary.mixed_case_duplicates + summary.converted
    statuses = statuses_for(cases) if cases else statuses_for(AUDIENCE[:2])
    from campaign_pipeline.salesforce.matching import match_campaign_members

    matches, unmatched = match_campaign_members(client, statuses)
    by_email = matches.set_index(matches["email_address"].str.lower())
    for email in summary.contact_and_lead + summary.mixed_case_duplicates:
        assert by_email.loc[email.lower(), "salesforce_object"] == "Contact"
    for email in summary.mixed_case_duplicates:
        contacts = [c for c in sandbox_org.org.records("Contact") if (c.get("Email") or "").lower() == email.lower()]
        oldest = sorted(contacts, key=lambda c: (c["CreatedDate"], c["Id"]))[0]
        assert by_email.loc[email.lower(), "salesforce_id"] == oldest["Id"]
        assert (
            "2 candidates" in by_email.loc[email.lower(), "match_note"]
            or by_email.loc[email.lower(), "candidate_count"] >= 2
        )
    leads = {lead["Id"]: lead for lead in sandbox_org.org.records("Lead")}
    assert not any(leads.get(i, {}).get("IsConverted") for i in matches["salesforce_id"])
    assert len(matches) + len(unmatched) == len(statuses)
    assert pd.Index(matches["email_id"]).is_unique


def test_unmatched_members_become_leads_once_when_the_profile_says_so(sandbox_org) -> None:
    from campaign_pipeline.salesforce.leads import create_leads_for_unmatched
    from campaign_pipeline.salesforce.matching import match_campaign_members

    profile = SyncProfile.model_validate(
        {"matching": {"create_leads_for_unmatched": True, "lead_company_default": "Acme"}}
    )
    statuses = statuses_for(AUDIENCE[:3] + ["newcomer@example.org", "Second.New@example.org"])
    client = sandbox_org.client()
    matches, unmatched = match_campaign_members(client, statuses)
    assert sorted(unmatched["email_address"]) == ["Second.New@example.org", "newcomer@example.org"]
    leads_before = len(sandbox_org.org.records("Lead"))

    report, new_matches = create_leads_for_unmatched(client, sandbox_org.ledger, profile, unmatched)
    assert report.total("created") == 2 and sorted(new_matches["email_id"]) == sorted(unmatched["email_id"])
    assert set(new_matches["salesforce_object"]) == {"Lead"}
    new_leads = sandbox_org.org.records("Lead")[leads_before:]
    assert sorted(lead["Email"] for lead in new_leads) == ["Second.New@example.org", "newcomer@example.org"]
    assert {lead["Company"] for lead in new_leads} == {"Acme"}
    assert set(new_matches["salesforce_id"]) == {lead["Id"] for lead in new_leads}

    # The next run matches them as ordinary Leads; nothing is created twice.
    again, unmatched_again = match_campaign_members(client, statuses)
    assert unmatched_again.empty and len(again) == len(statuses)
    assert len(sandbox_org.org.records("Lead")) == leads_before + 2


def test_bulk_lock_errors_are_retried_within_the_run(sandbox_org) -> None:
    profile = PROFILE.model_copy(update={"sync": PROFILE.sync.model_copy(update={"bulk_threshold": 5})})
    statuses = statuses_for(AUDIENCE[:20])
    sandbox_org.sync(statuses.iloc[:2], profile)  # Campaign and statuses exist; members go by Bulk below
    sandbox_org.org.faults.lock_error_rate = 0.3
    report = sandbox_org.sync(statuses, profile, client=sandbox_org.client(max_retries=8))
    assert report.failures.empty, report.failures.to_dict("records")
    assert report.outcomes["campaign_member"].api == "bulk" and report.retries >= 1
    members = sandbox_org.org.records("CampaignMember")
    assert len(members) == report.outcomes["campaign_member"].desired
    assert len({m.get("ContactId") or m["LeadId"] for m in members}) == len(members)


def test_a_create_whose_answer_times_out_is_looked_up_next_run_not_duplicated(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:6])
    sandbox_org.sync(statuses.iloc[:1])
    desired = sandbox_org.desired(statuses)
    client = sandbox_org.client(max_retries=1)
    for sobject in ("Campaign", "CampaignMemberStatus", "CampaignMember"):
        client.describe(sobject)  # cached for the run; only the writes below meet the slow network
    client.timeout_seconds = 0.2
    sandbox_org.org.faults.latency_ms = 400
    slow = sync_desired_records(client, sandbox_org.ledger, desired, PROFILE.sync)
    sandbox_org.org.faults.latency_ms = 0
    assert "TIMEOUT" in set(slow.failures["error_code"])
    assert "pending" in set(sandbox_org.ledger.load("campaign_member")["last_result"])
    finished = sandbox_org.sync(statuses)
    assert finished.failures.empty
    members = sandbox_org.org.records("CampaignMember")
    assert len(members) == finished.outcomes["campaign_member"].desired
    assert set(sandbox_org.ledger.load("campaign_member")["last_result"]) == {"ok"}


def test_crash_recovery_never_adopts_someone_elses_campaign_of_the_same_name(sandbox_org, monkeypatch) -> None:
    theirs = sandbox_org.client().sf.Campaign.create({"Name": "Spring offer", "Description": "made by hand"})["id"]
    statuses = statuses_for(AUDIENCE[:3])
    real_record = sandbox_org.ledger.record_results

    def crash_on_campaign(kind, results):
        if kind == "campaign":
            raise Crash("killed right after the Campaign was created")
        return real_record(kind, results)

    monkeypatch.setattr(sandbox_org.ledger, "record_results", crash_on_campaign)
    with pytest.raises(Crash):
        sandbox_org.sync(statuses)
    monkeypatch.setattr(sandbox_org.ledger, "record_results", real_record)
    sandbox_org.sync(statuses)
    campaigns = sandbox_org.org.records("Campaign")
    assert len(campaigns) == 2
    ours = sandbox_org.ledger.load("campaign")["salesforce_id"].tolist()
    assert ours != [theirs] and ours[0] in {c["Id"] for c in campaigns}
    assert {m["CampaignId"] for m in sandbox_org.org.records("CampaignMember")} == set(ours)
