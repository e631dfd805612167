"""Lost answers on the activity and notes write paths: Salesforce commits, the answer never arrives, the run goes on.

Each test makes the sandbox org lose its answer (a 504 after the commit, over HTTPS, to the real simple-salesforce
client) to the first call of one write path for one kind: Notes and Attachments (classic notes mode), Tasks with
and without an external-ID field, the single-record create of an Attachment too big for sObject Collections, and
the Bulk API 2.0 job create, upload and close. Then a re-run: exactly one record per key in the org, every ledger
row ``ok`` with the Id of that record, and a third run with nothing left to write.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.resources import sandbox_session

from .conftest import ActivityOrg, RecordingClient
from .frames import content, events, recipients, report

pytestmark = pytest.mark.slow  # a dozen syncs over HTTPS, a few seconds each

AUDIENCE = ("ann@example.com", "bob@example.com", "cat.mixed@example.com", "dan@example.com", "eve@nowhere.test")
# Request patterns (method, path under /services/data/vNN) of each write path.
COLLECTIONS_CREATE = ("POST", r"^/composite/sobjects/?$")
COLLECTIONS_UPDATE = ("PATCH", r"^/composite/sobjects/?$")
COLLECTIONS_UPSERT = ("PATCH", r"^/composite/sobjects/[^/]+/[^/]+/?$")
SINGLE_CREATE = ("POST", r"^/sobjects/[^/]+/?$")
BULK_CREATE = ("POST", r"^/jobs/ingest/?$")
BULK_UPLOAD = ("PUT", r"^/jobs/ingest/[^/]+/batches/?$")
BULK_CLOSE = ("PATCH", r"^/jobs/ingest/[^/]+/?$")


class LosingClient(RecordingClient):
    """The real client; just before its first call whose description matches ``lose``, the org is told to lose
    its answer to the next request on ``path`` (so the loss lands on that call and no other)."""

    def __init__(self, org: Any, lose: str, path: tuple[str, str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.org, self.lose, self.path, self.lost_in = org, lose, path, ""

    def call(self, kind: str, what: str, send: Any, *, idempotent: bool = True) -> Any:
        if not self.lost_in and re.search(self.lose, what):
            self.lost_in = what
            self.org.lose_answers_on(*self.path)
        return super().call(kind, what, send, idempotent=idempotent)


def sync_losing(activity_org: ActivityOrg, lose: str, path: tuple[str, str], *inputs: Any):
    """One sync of ``inputs`` (ActivityOrg.sync's) with one answer lost; the loss must have happened."""

    def losing_client(**settings: Any) -> LosingClient:
        return LosingClient(
            activity_org.org,
            lose,
            path,
            activity_org.org.client(),
            target="Salesforce target: SANDBOX org (lost answers)",
            is_sandbox=True,
            reauthenticate=lambda: sandbox_session(activity_org.org),
            **{"backoff_seconds": 0.0, "max_retries": 2, **settings},
        )

    activity_org.client = losing_client  # type: ignore[method-assign]
    try:
        report_ = activity_org.sync(*inputs)
    finally:
        del activity_org.client
    client = activity_org.last_client
    assert isinstance(client, LosingClient) and client.lost_in, f"no call matched {lose!r}"
    assert activity_org.org.answers_still_to_lose() == 0, f"{client.lost_in}: its answer was never lost"
    return report_


def assert_converged(activity_org: ActivityOrg, kinds: dict[str, tuple[str, Any]], *inputs: Any) -> None:
    """Re-run: one record per key of every kind, the ledger ``ok`` with those Ids; a third run writes nothing.

    ``kinds``: ledger kind -> (sObject, function giving a record's key).
    """
    rerun = activity_org.sync(*inputs)
    assert rerun.failures.empty and not rerun.kind_errors, (rerun.failures.to_dict("records"), rerun.kind_errors)
    for kind, (sobject, key_of) in kinds.items():
        records = activity_org.records(sobject)
        per_key = Counter(key_of(record) for record in records)
        assert per_key and set(per_key.values()) == {1}, {k: n for k, n in per_key.items() if n > 1}
        assert len(per_key) == rerun.outcomes[kind].desired
        ledger = activity_org.ledger.load(kind)
        assert set(ledger["last_result"]) == {"ok"}, ledger[ledger["last_result"] != "ok"].to_dict("records")
        assert sorted(ledger["salesforce_id"]) == sorted(record["Id"] for record in records)
    assert activity_org.sync(*inputs).write_calls == 0


def _events() -> pd.DataFrame:
    return events(
        ("ann@example.com", "open", "2026-03-02 15:05"),
        ("ann@example.com", "click", "2026-03-02 15:06", "https://example.com/offer"),
        ("ann@example.com", "open", "2026-03-04 08:00"),
        ("bob@example.com", "open", "2026-03-03 09:30"),
        ("cat.mixed@example.com", "click", "2026-03-02 16:00", "https://example.com/other"),
        ("dan@example.com", "open", "2026-03-02 15:01"),
        ("eve@nowhere.test", "open", "2026-03-02 15:10"),
    )


def _task_key(task: dict) -> str:
    return task["Description"].split("Mailchimp event: ", 1)[1].split("\n", 1)[0]


NOTES = {
    "note": ("Note", lambda n: (n["ParentId"], n["Title"])),
    "attachment": ("Attachment", lambda a: (a["ParentId"], a["Name"])),
}
TASKS = {"task": ("Task", _task_key)}


def _notes_profile(bulk_threshold: int = 2000, **sync: Any) -> SyncProfile:
    return SyncProfile.model_validate(
        {"mode": "notes", "activity": {"notes_format": "classic"}, "sync": {"bulk_threshold": bulk_threshold, **sync}}
    )


@pytest.mark.parametrize(
    ("bulk_threshold", "lose", "path"),
    [
        (2000, r"^create \d+ Note record\(s\) via sObject Collections", COLLECTIONS_CREATE),
        (2000, r"^create \d+ Attachment record\(s\) via sObject Collections", COLLECTIONS_CREATE),
        (2, r"^Bulk API 2.0 insert of \d+ Note record\(s\): create job$", BULK_CREATE),
        (2, r"^Bulk API 2.0 insert of \d+ Note record\(s\): upload$", BULK_UPLOAD),
    ],
    ids=[
        "note-collections-create",
        "attachment-collections-create",
        "note-bulk-create",
        "note-bulk-upload",
    ],
)
def test_notes_and_attachments_created_with_a_lost_answer_converge(activity_org, bulk_threshold, lose, path) -> None:
    inputs = (_notes_profile(bulk_threshold), recipients(*AUDIENCE), _events(), report(), content("<p>Spring</p>"))
    sync_losing(activity_org, lose, path, *inputs)
    # Nothing was sent twice within the run: the unanswered creates stay pending for the next run's lookup (a job
    # whose creation went unanswered got no data at all).
    assert len(activity_org.records("Note")) <= 4 and len(activity_org.records("Attachment")) == 4
    assert_converged(activity_org, NOTES, *inputs)


def test_a_note_update_with_a_lost_answer_lands_once_and_converges(activity_org) -> None:
    first = (_notes_profile(), recipients(*AUDIENCE), _events(), report(), content("<p>Spring</p>"))
    activity_org.sync(*first)
    later = pd.concat([_events(), events(("bob@example.com", "open", "2026-03-09 10:00"))], ignore_index=True)
    inputs = (_notes_profile(), recipients(*AUDIENCE), later, report(), content("<p>Spring</p>"))
    sync_losing(activity_org, r"^update \d+ Note record\(s\) via sObject Collections", COLLECTIONS_UPDATE, *inputs)
    assert_converged(activity_org, NOTES, *inputs)
    bob = activity_org.person_ids["bob@example.com"]
    assert "Opens: 2" in next(n["Body"] for n in activity_org.records("Note") if n["ParentId"] == bob)


def test_a_single_record_attachment_create_with_a_lost_answer_converges(activity_org) -> None:
    # An Attachment bigger than a whole Collections call goes alone: POST /sobjects/Attachment.
    big = "<p>" + "b" * 40_000 + "</p>"
    inputs = (
        _notes_profile(collections_max_request_bytes=30_000),
        recipients(*AUDIENCE),
        _events(),
        report(),
        content(big),
    )
    sync_losing(activity_org, r"^create 1 Attachment record via the sObject resource", SINGLE_CREATE, *inputs)
    assert len(activity_org.records("Attachment")) == 4
    assert_converged(activity_org, NOTES, *inputs)


def _many_events(per_person: int) -> pd.DataFrame:
    rows = []
    for number in range(per_person):
        for address in AUDIENCE[:4]:
            minute = pd.Timestamp("2026-03-02 15:00") + pd.Timedelta(minutes=number)
            rows.append((address, "open", str(minute)))
            rows.append((address, "click", str(minute), f"https://example.com/p/{number}"))
    return events(*rows)


@pytest.mark.parametrize(
    ("mapping", "bulk_threshold", "lose", "path"),
    [
        ({}, 2000, r"^create 200 Task record\(s\) via sObject Collections", COLLECTIONS_CREATE),
        ({}, 20, r"^Bulk API 2.0 insert of \d+ Task record\(s\): create job$", BULK_CREATE),
        ({}, 20, r"^Bulk API 2.0 insert of \d+ Task record\(s\): upload$", BULK_UPLOAD),
        ({}, 20, r"^Bulk API 2.0 insert of \d+ Task record\(s\): close$", BULK_CLOSE),
        (
            {"task_key_field": "Mailchimp_Event_Id__c"},
            2000,
            r"^create 200 Task record\(s\) via sObject Collections",
            COLLECTIONS_UPSERT,
        ),
        (
            {"task_key_field": "Mailchimp_Event_Id__c"},
            20,
            r"^Bulk API 2.0 upsert of \d+ Task record\(s\): upload$",
            BULK_UPLOAD,
        ),
    ],
    ids=[
        "unkeyed-collections-create",
        "unkeyed-bulk-create",
        "unkeyed-bulk-upload",
        "unkeyed-bulk-close",
        "keyed-collections-upsert",
        "keyed-bulk-upload",
    ],
)
def test_tasks_created_with_a_lost_answer_converge_to_one_task_per_event(
    activity_org, mapping, bulk_threshold, lose, path
) -> None:
    profile = SyncProfile.model_validate(
        {"mode": "activity", "field_mapping": mapping, "sync": {"bulk_threshold": bulk_threshold}}
    )
    raw = _many_events(per_person=30)  # 240 Tasks: two Collections calls, or one Bulk job
    inputs = (profile, recipients(*AUDIENCE), raw, report())
    sync_losing(activity_org, lose, path, *inputs)
    assert set(Counter(_task_key(t) for t in activity_org.records("Task")).values()) <= {1}
    assert_converged(activity_org, TASKS, *inputs)
    assert {_task_key(t) for t in activity_org.records("Task")} == set(raw["event_id"])


def test_a_campaign_and_its_tasks_with_lost_answers_converge(activity_org) -> None:
    # campaign_and_activity without external IDs: the Campaign's create answer is lost; its Tasks wait for it
    # (they point at it) and the re-run adopts the Campaign by its name and Mailchimp id, then makes them.
    profile = SyncProfile.model_validate(
        {"mode": "campaign_and_activity", "field_mapping": {"campaign_key_field": None, "task_key_field": None}}
    )
    inputs = (profile, recipients(*AUDIENCE), _events(), report())
    sync_losing(activity_org, r"^create 1 Campaign record\(s\) via sObject Collections", COLLECTIONS_CREATE, *inputs)
    assert len(activity_org.records("Campaign")) == 1
    campaign = {"campaign": ("Campaign", lambda c: c["Name"])}
    assert_converged(activity_org, {**campaign, **TASKS}, *inputs)
    (campaign_id,) = (c["Id"] for c in activity_org.records("Campaign"))
    assert {t["WhatId"] for t in activity_org.records("Task")} == {campaign_id}
