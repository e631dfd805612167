"""End to end over HTTPS: modes activity, campaign_and_activity and notes through the sync engine and the sandbox org."""

from __future__ import annotations

import base64

import pandas as pd
import pytest

from campaign_pipeline.core.activity_records import ATTACHMENT_MAX_BYTES
from campaign_pipeline.modes import desired_records
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import sobject_collections, sync_desired_records
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members

from .frames import content, events, recipients, report, statuses

OFFER = "https://example.com/offer?utm=spring"
AUDIENCE = ("ann@example.com", "bob@example.com", "cat.mixed@example.com", "dan@example.com", "eve@nowhere.test")


def _events() -> pd.DataFrame:
    return events(
        ("ann@example.com", "open", "2026-03-02 15:05"),
        ("ann@example.com", "click", "2026-03-02 15:06", OFFER),
        ("ann@example.com", "open", "2026-03-04 08:00"),
        ("bob@example.com", "open", "2026-03-03 09:30"),
        ("cat.mixed@example.com", "click", "2026-03-02 16:00", "https://example.com/other"),
        ("dan@example.com", "bounce", "2026-03-02 15:01", "hard"),
        ("eve@nowhere.test", "open", "2026-03-02 15:10"),  # no Lead/Contact: no Task
    )


def _profile(mode: str, **mapping) -> SyncProfile:
    # Mode notes here is the classic choice (Note and Attachment); test_enhanced_notes covers the default.
    activity = {"notes_format": "classic"} if mode == "notes" else {}
    return SyncProfile.model_validate({"mode": mode, "field_mapping": mapping, "activity": activity})


def _tasks_by_key(org, key_field: str | None = None) -> dict[str, dict]:
    tasks = org.records("Task")
    if key_field:
        return {t[key_field]: t for t in tasks}
    return {_event_key(t): t for t in tasks}


def _event_key(task: dict) -> str:
    return task["Description"].split("Mailchimp event: ", 1)[1].split("\n", 1)[0]


def test_activity_mode_writes_a_task_per_open_and_click_and_a_rerun_writes_nothing(activity_org) -> None:
    profile = _profile("activity")
    raw = _events()
    first = activity_org.sync(profile, recipients(*AUDIENCE), raw, report())
    assert first.failures.empty, first.failures
    assert first.outcomes["task"].created == 5
    tasks = _tasks_by_key(activity_org)
    wanted = raw[raw["action"].isin(["open", "click"]) & (raw["email_address"] != "eve@nowhere.test")]
    assert set(tasks) == set(wanted["event_id"])
    click = tasks[wanted.loc[wanted["url"] == OFFER, "event_id"].iloc[0]]
    assert click["Subject"] == "Clicked email campaign: Test campaign 1"
    assert click["WhoId"] == activity_org.person_ids["ann@example.com"]
    assert click["Status"] == "Completed" and click["TaskSubtype"] == "Email"
    assert click["ActivityDate"] == "2026-03-02"
    assert f"Clicked URL: {OFFER}" in click["Description"] and "2026-03-02 15:06:00 UTC" in click["Description"]
    assert click.get("WhatId") is None and click.get("Clicked_URL__c") is None
    bob = next(t for t in tasks.values() if t["WhoId"] == activity_org.person_ids["bob@example.com"])
    assert bob["Subject"] == "Opened email campaign: Test campaign 1"
    # A mixed-case Salesforce address matches its lower-case Mailchimp member.
    assert any(t["WhoId"] == activity_org.person_ids["Cat.Mixed@Example.com"] for t in tasks.values())

    again = activity_org.sync(profile, recipients(*AUDIENCE), raw, report())
    assert again.write_calls == 0
    assert again.outcomes["task"].unchanged == 5
    assert len(activity_org.records("Task")) == 5


def test_mapped_status_url_and_event_key_fields(activity_org) -> None:
    profile = _profile(
        "activity", task_status_field="Type", task_url_field="Clicked_URL__c", task_key_field="Mailchimp_Event_Id__c"
    )
    report_run = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report())
    assert report_run.failures.empty, report_run.failures
    tasks = _tasks_by_key(activity_org, "Mailchimp_Event_Id__c")
    assert len(tasks) == 5
    assert {t["Subject"] for t in tasks.values()} == {"Email campaign: Test campaign 1"}
    clicks = [t for t in tasks.values() if t["Type"] == "Clicked"]
    assert sorted(t["Clicked_URL__c"] for t in clicks) == sorted([OFFER, "https://example.com/other"])
    assert all("Clicked URL" not in t["Description"] for t in tasks.values())
    assert {t["Type"] for t in tasks.values()} == {"Clicked", "Opened"}
    assert activity_org.sync(profile, recipients(*AUDIENCE), _events(), report()).write_calls == 0


def test_new_events_add_exactly_their_tasks(activity_org) -> None:
    profile = _profile("activity")
    activity_org.sync(profile, recipients(*AUDIENCE), _events(), report())
    late = events(
        ("bob@example.com", "click", "2026-03-20 10:00", OFFER),
        ("dan@example.com", "open", "2026-03-21 11:00"),
    )
    # Overlapping fetch: the old events arrive again next to the new ones.
    later = activity_org.sync(profile, recipients(*AUDIENCE), pd.concat([_events(), late], ignore_index=True), report())
    task = later.outcomes["task"]
    assert (task.created, task.updated, task.unchanged, task.failed) == (2, 0, 5, 0)
    keys = _tasks_by_key(activity_org)
    assert len(activity_org.records("Task")) == 7 and set(late["event_id"]) <= set(keys)


def test_campaign_and_activity_points_tasks_at_the_campaign(activity_org) -> None:
    profile = _profile("campaign_and_activity")
    run = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report())
    assert run.failures.empty, run.failures
    campaigns = activity_org.records("Campaign")
    assert [c["Name"] for c in campaigns] == ["Test campaign 1"]
    members = activity_org.records("CampaignMember")
    assert len(members) == 4
    tasks = activity_org.records("Task")
    assert len(tasks) == 5 and {t["WhatId"] for t in tasks} == {campaigns[0]["Id"]}
    assert activity_org.sync(profile, recipients(*AUDIENCE), _events(), report()).write_calls == 0


def test_one_task_per_url_collapses_repeat_clicks_in_salesforce(activity_org) -> None:
    profile = SyncProfile.model_validate({"mode": "activity", "activity": {"one_task_per_url": True}})
    repeat = pd.concat([_events(), events(("ann@example.com", "click", "2026-03-05 12:00", OFFER))], ignore_index=True)
    activity_org.sync(profile, recipients(*AUDIENCE), _events(), report())
    assert len(activity_org.records("Task")) == 5
    run = activity_org.sync(profile, recipients(*AUDIENCE), repeat, report())
    assert (run.outcomes["task"].created, run.outcomes["task"].updated) == (0, 1)
    offer = [t for t in activity_org.records("Task") if OFFER in t["Description"]]
    assert len(offer) == 1 and "Clicked 2 times" in offer[0]["Description"]


def test_notes_mode_puts_a_note_and_the_sent_email_on_each_person(activity_org) -> None:
    profile = _profile("notes")
    html = "<html><body><h1>Spring offer</h1><p>Grüße</p></body></html>"
    run = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(html))
    assert run.failures.empty, run.failures
    notes = {n["ParentId"]: n for n in activity_org.records("Note")}
    assert set(notes) == set(activity_org.person_ids.values())
    ann = notes[activity_org.person_ids["ann@example.com"]]
    assert ann["Title"] == "Email response: Test campaign 1 (c1)"
    assert "Sent to ann@example.com on 2026-03-02 15:00 UTC" in ann["Body"]
    assert "Opens: 2, first 2026-03-02 15:05 UTC, last 2026-03-04 08:00 UTC" in ann["Body"]
    assert f"  - {OFFER} (1x, first 2026-03-02 15:06 UTC)" in ann["Body"]
    dan = notes[activity_org.person_ids["dan@example.com"]]
    assert "Bounced: hard (2026-03-02 15:01 UTC)" in dan["Body"]
    attachments = {a["ParentId"]: a for a in activity_org.records("Attachment")}
    assert set(attachments) == set(activity_org.person_ids.values())
    sample = attachments[activity_org.person_ids["bob@example.com"]]
    assert sample["ContentType"] == "text/html" and sample["Name"] == "mailchimp-c1.html"
    assert base64.b64decode(sample["Body"]).decode("utf-8") == html

    assert activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(html)).write_calls == 0
    # New activity updates the person's Note in place.
    more = pd.concat([_events(), events(("bob@example.com", "open", "2026-03-09 10:00"))], ignore_index=True)
    updated = activity_org.sync(profile, recipients(*AUDIENCE), more, report(), content(html))
    assert (updated.outcomes["note"].created, updated.outcomes["note"].updated) == (0, 1)
    assert updated.outcomes["attachment"].unchanged == 4
    bob = next(n for n in activity_org.records("Note") if n["ParentId"] == activity_org.person_ids["bob@example.com"])
    assert "Opens: 2" in bob["Body"] and len(activity_org.records("Note")) == 4


def test_too_large_email_is_refused_with_a_reason_while_the_rest_syncs(activity_org) -> None:
    profile = _profile("notes")
    small = recipients(*AUDIENCE, campaign_id="c1")
    large = recipients(*AUDIENCE[:2], campaign_id="c2")
    both = pd.concat([small, large], ignore_index=True)
    raw = pd.concat([_events(), events(("ann@example.com", "open", "2026-03-02 18:00"), campaign_id="c2")])
    huge = "<html>" + "x" * ATTACHMENT_MAX_BYTES + "</html>"
    html = pd.concat([content("<p>small</p>", "c1"), content(huge, "c2")], ignore_index=True)
    reports = pd.concat([report("c1"), report("c2", title="Huge newsletter")], ignore_index=True)
    run = activity_org.sync(profile, both, raw, reports, html)
    refused = run.failures[run.failures["object_kind"] == "attachment"]
    assert len(refused) == 2 and set(refused["campaign_id"]) == {"c2"}
    assert refused["error_message"].str.contains(f"is {len(huge)} bytes").all()
    assert refused["error_message"].str.contains("never truncated").all()
    assert len(activity_org.records("Note")) == 6
    attachments = activity_org.records("Attachment")
    assert len(attachments) == 4 and {a["Name"] for a in attachments} == {"mailchimp-c1.html"}
    # The refusal is kept visible in the ledger, and the next run does not try to send it.
    failures = activity_org.ledger.failures("attachment")
    assert len(failures) == 2 and failures["error_message"].str.contains("25 MB|26214400").all()
    rerun = activity_org.sync(profile, both, raw, reports, html)
    assert rerun.write_calls == 0


class _CrashAfter(SyncLedger):
    """A ledger whose process 'dies' after Salesforce accepted a batch and before its outcome is stored."""

    def __init__(self, ledger: SyncLedger, kind: str, ok_batches_recorded: int) -> None:
        super().__init__(ledger.engine, schema=ledger.schema, table=ledger.table)
        self.kind = kind
        self.remaining = ok_batches_recorded

    def record_results(self, object_kind: str, results: pd.DataFrame) -> None:
        if object_kind == self.kind and (results["last_result"] == "ok").any():
            if self.remaining == 0:
                raise KeyboardInterrupt("simulated crash between Salesforce's answer and the ledger write")
            self.remaining -= 1
        super().record_results(object_kind, results)


def _many_events(per_person: int) -> pd.DataFrame:
    rows = []
    for number in range(per_person):
        for address in AUDIENCE[:4]:
            minute = pd.Timestamp("2026-03-02 15:00") + pd.Timedelta(minutes=number)
            rows.append((address, "open", str(minute)))
            rows.append((address, "click", str(minute), f"https://example.com/p/{number}"))
    return events(*rows)


@pytest.mark.parametrize(
    ("mapping", "bulk_threshold"),
    [({}, 2000), ({"task_key_field": "Mailchimp_Event_Id__c"}, 2000), ({}, 100)],
    ids=["collections-no-external-id", "collections-upsert-by-event-id", "bulk-no-external-id"],
)
def test_crash_mid_sync_then_rerun_gives_every_task_once(activity_org, mapping, bulk_threshold) -> None:
    profile = SyncProfile.model_validate(
        {"mode": "activity", "field_mapping": mapping, "sync": {"bulk_threshold": bulk_threshold}}
    )
    raw = _many_events(per_person=60)  # 480 Tasks: three Collections calls, or one Bulk job
    crashing = _CrashAfter(activity_org.ledger, "task", ok_batches_recorded=1 if bulk_threshold > 480 else 0)
    with pytest.raises(KeyboardInterrupt):
        activity_org.sync(profile, recipients(*AUDIENCE), raw, report(), ledger=crashing)
    written = len(activity_org.records("Task"))
    assert 0 < written < 480 or bulk_threshold <= 480
    rerun = activity_org.sync(profile, recipients(*AUDIENCE), raw, report())
    assert rerun.failures.empty, rerun.failures
    assert rerun.outcomes["task"].created == 480 - written
    if not mapping:
        # Tasks the interrupted run made are adopted as they are; with an external ID they are upserted again.
        assert rerun.outcomes["task"].updated == 0
    assert not [soql for soql in activity_org.last_client.soql if "Description IN" in soql]
    tasks = activity_org.records("Task")
    keys = [_event_key(t) for t in tasks]
    assert len(tasks) == 480 and len(set(keys)) == 480
    assert set(keys) == set(raw["event_id"])
    assert activity_org.sync(profile, recipients(*AUDIENCE), raw, report()).write_calls == 0


def test_crash_mid_sync_of_notes_then_rerun_gives_one_note_per_person(activity_org) -> None:
    profile = _profile("notes")
    crashing = _CrashAfter(activity_org.ledger, "note", ok_batches_recorded=0)
    with pytest.raises(KeyboardInterrupt):
        activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content("<p>x</p>"), ledger=crashing)
    assert len(activity_org.records("Note")) == 4 and not activity_org.records("Attachment")
    rerun = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content("<p>x</p>"))
    assert rerun.failures.empty, rerun.failures
    assert rerun.outcomes["note"].created == 0
    assert len(activity_org.records("Note")) == 4 and len(activity_org.records("Attachment")) == 4


def test_engine_lookup_after_a_crash_adopts_tasks_without_filtering_on_description(activity_org) -> None:
    # The engine's own crash lookup (no recover_pending_tasks first): Description is a long text area, which a live
    # org (and the sandbox) refuses in a WHERE clause, so it must be matched in Python and never filtered on.
    profile = _profile("activity")
    raw = _many_events(per_person=30)  # 240 Tasks: two Collections calls; the first is made but never recorded
    crashing = _CrashAfter(activity_org.ledger, "task", ok_batches_recorded=0)
    with pytest.raises(KeyboardInterrupt):
        activity_org.sync(profile, recipients(*AUDIENCE), raw, report(), ledger=crashing)
    written = len(activity_org.records("Task"))
    assert 0 < written < 240
    client = activity_org.client()
    members = statuses(recipients(*AUDIENCE), raw)
    matches, _ = match_campaign_members(client, members, activity_org.mirror)
    desired = desired_records(
        profile,
        {
            "raw_email_events": raw,
            "member_statuses": members,
            "salesforce_matches": matches,
            "mailchimp_campaign_report": report(),
        },
    )
    rerun = sync_desired_records(client, activity_org.ledger, desired, profile.sync)
    assert not rerun.kind_errors, rerun.kind_errors
    assert rerun.failures.empty, rerun.failures
    lookups = [soql for soql in client.soql if "FROM Task" in soql]
    assert lookups and not [soql for soql in lookups if "Description" in soql.split("WHERE", 1)[1]]
    # The Tasks of the crashed batch are adopted as they are: nothing is created twice.
    assert rerun.outcomes["task"].created == 240 - written
    assert rerun.outcomes["task"].unchanged == written
    keys = [_event_key(t) for t in activity_org.records("Task")]
    assert len(keys) == 240 and set(keys) == set(raw["event_id"])


def test_crash_recovery_of_many_notes_costs_a_few_queries_not_one_per_person(activity_org) -> None:
    # 300 more people: a crash leaves the first 200 Notes made but unrecorded, and the re-run must find them with
    # ParentId IN (...) chunks, not one query per person.
    crowd = [f"person{number}@example.com" for number in range(300)]
    results = activity_org.org.store.write(
        "Contact", "insert", [{"LastName": f"P{number}", "Email": address} for number, address in enumerate(crowd)]
    )
    assert all(result.success for result in results)
    audience = recipients(*crowd)
    raw = events(*[(address, "open", "2026-03-02 16:00") for address in crowd])
    crashing = _CrashAfter(activity_org.ledger, "note", ok_batches_recorded=0)
    with pytest.raises(KeyboardInterrupt):
        activity_org.sync(_profile("notes"), audience, raw, report(), ledger=crashing)
    assert len(activity_org.records("Note")) == 200
    rerun = activity_org.sync(_profile("notes"), audience, raw, report())
    assert rerun.failures.empty and not rerun.kind_errors, (rerun.failures, rerun.kind_errors)
    assert (rerun.outcomes["note"].created, rerun.outcomes["note"].unchanged) == (100, 200)
    note_queries = [soql for soql in activity_org.last_client.soql if "FROM Note" in soql]
    assert 1 <= len(note_queries) <= 3, note_queries
    assert all("ParentId IN (" in soql for soql in note_queries)
    notes = activity_org.records("Note")
    assert len(notes) == 300 and len({n["ParentId"] for n in notes}) == 300


def test_attachments_never_go_by_bulk_and_collections_calls_are_cut_by_payload_size(activity_org, monkeypatch) -> None:
    # Bulk API 2.0 cannot carry Attachment.Body: above the bulk threshold Notes go by Bulk, Attachments still by
    # sObject Collections, cut by body size; an Attachment bigger than a whole call goes alone (POST /sobjects).
    monkeypatch.setattr(sobject_collections, "COLLECTION_MAX_BODY_BYTES", 30_000)
    profile = SyncProfile.model_validate(
        {"mode": "notes", "sync": {"bulk_threshold": 2}, "activity": {"notes_format": "classic"}}
    )
    both = pd.concat([recipients(*AUDIENCE, campaign_id="c1"), recipients(*AUDIENCE[:2], campaign_id="c2")])
    raw = pd.concat([_events(), events(("ann@example.com", "open", "2026-03-02 18:00"), campaign_id="c2")])
    small = "<p>" + "s" * 10_000 + "</p>"  # ~13 KB in base64: two fit in one call
    big = "<p>" + "b" * 40_000 + "</p>"  # ~53 KB in base64: more than a whole call
    html = pd.concat([content(small, "c1"), content(big, "c2")], ignore_index=True)
    reports = pd.concat([report("c1"), report("c2", title="Big one")], ignore_index=True)
    activity_org.org.call_log.clear()
    run = activity_org.sync(profile, both, raw, reports, html)
    assert run.failures.empty and not run.kind_errors, (run.failures, run.kind_errors)
    assert (run.outcomes["note"].api, run.outcomes["attachment"].api) == ("bulk", "collections")
    assert run.outcomes["attachment"].created == 6
    writes = [(method, path.split("/v", 1)[1].split("/", 1)[1]) for method, path, kind in activity_org.org.call_log]
    assert writes.count(("POST", "composite/sobjects")) == 2  # four small bodies, two per call
    assert writes.count(("POST", "sobjects/Attachment")) == 2  # each big body alone
    bodies = {
        (a["ParentId"], a["Name"]): base64.b64decode(a["Body"]).decode() for a in activity_org.records("Attachment")
    }
    assert len(bodies) == 6
    assert bodies[(activity_org.person_ids["ann@example.com"], "mailchimp-c2.html")] == big
    assert bodies[(activity_org.person_ids["dan@example.com"], "mailchimp-c1.html")] == small
    assert activity_org.sync(profile, both, raw, reports, html).write_calls == 0


def test_collection_batches_cut_by_count_and_size_and_put_an_oversized_record_alone() -> None:
    sizes = [10] * 450
    assert [len(batch) for batch in sobject_collections.collection_batches(list(range(450)), sizes, 10_000)] == [
        200,
        200,
        50,
    ]
    sizes = [40, 40, 40, 500, 40, 40]
    batches = list(sobject_collections.collection_batches(list(range(6)), sizes, 100))
    assert batches == [[0, 1], [2], [3], [4, 5]]


def test_an_oversized_attachment_is_updated_alone_and_its_refusal_is_its_own(activity_org, monkeypatch) -> None:
    monkeypatch.setattr(sobject_collections, "COLLECTION_MAX_BODY_BYTES", 30_000)
    profile = _profile("notes")
    audience = recipients(*AUDIENCE[:2])
    raw = events(("ann@example.com", "open", "2026-03-02 15:05"), ("bob@example.com", "open", "2026-03-02 15:07"))
    first = "<p>" + "a" * 40_000 + "</p>"
    activity_org.sync(profile, audience, raw, report(), content(first))
    ann, bob = (activity_org.person_ids[a] for a in ("ann@example.com", "bob@example.com"))
    ids = {a["ParentId"]: a["Id"] for a in activity_org.records("Attachment")}
    # The sent email changed: each big body is updated on its own (PATCH /sobjects/Attachment/<Id>).
    activity_org.org.call_log.clear()
    second = "<p>" + "c" * 40_000 + "</p>"
    run = activity_org.sync(profile, audience, raw, report(), content(second))
    assert run.outcomes["attachment"].updated == 2 and run.failures.empty, run.failures
    patched = sorted(path.rsplit("/", 1)[1] for method, path, _ in activity_org.org.call_log if method == "PATCH")
    assert patched == sorted(ids.values())
    assert {base64.b64decode(a["Body"]).decode() for a in activity_org.records("Attachment")} == {second}
    # Bob's Attachment is deleted in Salesforce: its single-record update is refused for it alone, with the code.
    activity_org.org.store.delete([ids[bob]])
    third = "<p>" + "d" * 40_000 + "</p>"
    run = activity_org.sync(profile, audience, raw, report(), content(third))
    assert not run.kind_errors and run.outcomes["attachment"].updated == 1
    [failure] = run.failures[run.failures["object_kind"] == "attachment"].to_dict("records")
    assert failure["sync_key"].endswith(bob) and failure["error_code"] in ("ENTITY_IS_DELETED", "NOT_FOUND")
    [kept] = activity_org.records("Attachment")
    assert kept["ParentId"] == ann and base64.b64decode(kept["Body"]).decode() == third
