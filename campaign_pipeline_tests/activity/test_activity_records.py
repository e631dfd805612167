"""Pure tests of the desired Tasks, Notes and Attachments (core.activity_records)."""

from __future__ import annotations

import base64

import pandas as pd

from campaign_pipeline.core import activity_records as activity
from campaign_pipeline.core.diff import content_hashes, diff_against_ledger
from campaign_pipeline.core.salesforce_records import TRUNCATION_MARKER

from .frames import content, events, matches, recipients, report, statuses

PEOPLE = {"ann@x.com": ("00Q5g0000000001AAA", "Lead"), "bob@x.com": ("0035g0000000002AAA", "Contact")}
OFFER = "https://example.com/offer"


def _activity() -> pd.DataFrame:
    return events(
        ("ann@x.com", "open", "2026-03-02 15:05"),
        ("ann@x.com", "click", "2026-03-02 15:06", OFFER),
        ("bob@x.com", "open", "2026-03-03 08:00"),
        ("bob@x.com", "bounce", "2026-03-02 15:01", "soft"),
        ("bob@x.com", "unsubscribe", "2026-03-03 09:00"),
        ("cid@x.com", "open", "2026-03-02 16:00"),  # not matched in Salesforce: no Task
    )


def _tasks(event_frame: pd.DataFrame | None = None, **options) -> pd.DataFrame:
    event_frame = _activity() if event_frame is None else event_frame
    members = statuses(recipients("ann@x.com", "bob@x.com", "cid@x.com"), event_frame)
    return activity.desired_tasks(event_frame, members, matches(PEOPLE), report(), **options)


def _row(frame: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column] == value
    assert mask.sum() == 1, f"expected one row for {where}, got {int(mask.sum())}"
    return frame[mask].iloc[0]


def test_one_task_per_open_and_click_of_matched_members_only() -> None:
    tasks = _tasks()
    raw = _activity()
    expected_keys = set(
        raw.loc[raw["action"].isin(["open", "click"]) & (raw["email_address"] != "cid@x.com"), "event_id"]
    )
    assert set(tasks["sync_key"]) == expected_keys
    assert len(tasks) == 3
    click = _row(
        tasks,
        WhoId=PEOPLE["ann@x.com"][0],
        ActivityDate="2026-03-02",
        Subject="Clicked email campaign: Test campaign 1",
    )
    assert click["Status"] == "Completed"
    assert click["TaskSubtype"] == "Email"
    assert "2026-03-02 15:06:00 UTC" in click["Description"]
    bob = _row(tasks, WhoId=PEOPLE["bob@x.com"][0])
    assert bob["Subject"] == "Opened email campaign: Test campaign 1"
    assert bob["ActivityDate"] == "2026-03-03"
    assert tasks["parent_key"].isna().all()


def test_subject_rule_status_mapped_moves_status_out_of_subject() -> None:
    tasks = _tasks(status_field="Response_Status__c")
    assert set(tasks["Subject"]) == {"Email campaign: Test campaign 1"}
    assert sorted(tasks["Response_Status__c"]) == ["Clicked", "Opened", "Opened"]
    unmapped = _tasks()
    assert "Response_Status__c" not in unmapped.columns
    assert sorted(unmapped["Subject"].str.split(" ").str[0]) == ["Clicked", "Opened", "Opened"]


def test_clicked_url_in_description_by_default_and_in_mapped_field_otherwise() -> None:
    default = _row(_tasks(), Subject="Clicked email campaign: Test campaign 1")
    assert f"Clicked URL: {OFFER}" in default["Description"]
    mapped_tasks = _tasks(url_field="Clicked_URL__c")
    mapped = _row(mapped_tasks, Subject="Clicked email campaign: Test campaign 1")
    assert mapped["Clicked_URL__c"] == OFFER
    assert OFFER not in mapped["Description"]
    assert mapped_tasks.loc[mapped_tasks["Subject"].str.startswith("Opened"), "Clicked_URL__c"].isna().all()


def test_long_subject_is_cut_to_255_with_marker() -> None:
    long_title = "Spring " * 60
    event_frame = events(("ann@x.com", "open", "2026-03-02 15:05"))
    members = statuses(recipients("ann@x.com"), event_frame)
    tasks = activity.desired_tasks(event_frame, members, matches(PEOPLE), report(title=long_title))
    subject = tasks.loc[0, "Subject"]
    assert len(subject) == 255
    assert subject.endswith(TRUNCATION_MARKER)
    assert subject.startswith("Opened email campaign: Spring Spring")
    assert tasks.loc[0, "truncated_fields"] == "Subject"
    rejected = activity.desired_tasks(
        event_frame, members, matches(PEOPLE), report(title=long_title), field_limit_policy="reject"
    )
    assert "Task.Subject is" in rejected.loc[0, "reject_reason"] and "allows 255" in rejected.loc[0, "reject_reason"]


def test_overlong_url_in_mapped_field_is_marked_as_truncated() -> None:
    url = "https://example.com/" + "a" * 300
    event_frame = events(("ann@x.com", "click", "2026-03-02 15:06", url))
    members = statuses(recipients("ann@x.com"), event_frame)
    tasks = activity.desired_tasks(event_frame, members, matches(PEOPLE), report(), url_field="Clicked_URL__c")
    assert len(tasks.loc[0, "Clicked_URL__c"]) == 255
    assert tasks.loc[0, "truncated_fields"] == "Clicked_URL__c"
    # The cut URL no longer works; the description keeps it whole.
    assert tasks.loc[0, "Description"].endswith(f"Clicked URL: {url}")


def test_task_keys_are_event_identities_stable_across_runs_and_input_order() -> None:
    first = _tasks(key_field="Mailchimp_Event_Id__c")
    shuffled = _activity().sample(frac=1, random_state=3)
    members = statuses(recipients("ann@x.com", "bob@x.com", "cid@x.com"), shuffled)
    again = activity.desired_tasks(shuffled, members, matches(PEOPLE), report(), key_field="Mailchimp_Event_Id__c")
    assert (first["Mailchimp_Event_Id__c"] == first["sync_key"]).all()
    by_key = dict(zip(first["sync_key"], content_hashes(first), strict=True))
    assert dict(zip(again["sync_key"], content_hashes(again), strict=True)) == by_key


def test_new_events_add_exactly_their_tasks_and_leave_the_others_unchanged() -> None:
    before = _tasks()
    ledger = pd.DataFrame(
        {
            "sync_key": before["sync_key"],
            "salesforce_id": [f"00T5g00000000{i:02d}AAA" for i in range(len(before))],
            "content_hash": content_hashes(before),
            "last_result": "ok",
        }
    )
    more = pd.concat(
        [
            _activity(),
            events(("bob@x.com", "click", "2026-03-04 10:00", OFFER), ("ann@x.com", "open", "2026-03-05 07:00")),
        ],
        ignore_index=True,
    )
    after = _tasks(more)
    actions = diff_against_ledger(after, ledger)["action"].value_counts().to_dict()
    assert actions == {"unchanged": 3, "create": 2}


def test_campaign_and_activity_links_tasks_to_the_campaign() -> None:
    tasks = _tasks(link_campaign=True)
    assert (tasks["parent_key"] == "c1").all()


def test_org_without_task_subtype_gets_no_such_field() -> None:
    assert "TaskSubtype" not in _tasks(task_subtype=None).columns


def test_one_task_per_url_collapses_repeat_clicks_and_keeps_its_key_when_more_arrive() -> None:
    clicks = events(
        ("ann@x.com", "click", "2026-03-02 15:06", OFFER),
        ("ann@x.com", "click", "2026-03-02 18:00", OFFER),
        ("ann@x.com", "click", "2026-03-02 18:01", "https://example.com/other"),
        ("ann@x.com", "open", "2026-03-02 15:05"),
    )
    per_event = _tasks(clicks)
    assert len(per_event) == 4
    per_url = _tasks(clicks, one_task_per_url=True)
    assert len(per_url) == 3
    offer = per_url[per_url["Description"].str.contains(OFFER, regex=False)].iloc[0]
    assert offer["ActivityDate"] == "2026-03-02"
    assert "Clicked 2 times, first at 2026-03-02 15:06:00 UTC, last at 2026-03-02 18:00:00 UTC" in offer["Description"]
    third = pd.concat([clicks, events(("ann@x.com", "click", "2026-03-06 09:00", OFFER))], ignore_index=True)
    later = _tasks(third, one_task_per_url=True)
    assert set(later["sync_key"]) == set(per_url["sync_key"])
    updated = later[later["sync_key"] == offer["sync_key"]].iloc[0]
    assert "Clicked 3 times" in updated["Description"]


def _notes(event_frame: pd.DataFrame | None = None, people=None, **report_options) -> pd.DataFrame:
    event_frame = _activity() if event_frame is None else event_frame
    members = statuses(recipients("ann@x.com", "bob@x.com", "cid@x.com", bounced={"bob@x.com": "soft"}), event_frame)
    return activity.desired_notes(members, event_frame, matches(people or PEOPLE), report(**report_options))


def test_note_summarises_send_opens_clicks_bounce_and_unsubscribe_per_person() -> None:
    notes = _notes()
    assert sorted(notes["sync_key"]) == sorted(f"c1|{sf_id}" for sf_id, _ in PEOPLE.values())
    ann = _row(notes, ParentId=PEOPLE["ann@x.com"][0])
    assert ann["Title"] == "Email response: Test campaign 1 (c1)"
    assert "Sent to ann@x.com on 2026-03-02 15:00 UTC" in ann["Body"]
    assert "Opens: 1, first 2026-03-02 15:05 UTC" in ann["Body"]
    assert f"Clicks: 1\n  - {OFFER} (1x, first 2026-03-02 15:06 UTC)" in ann["Body"]
    assert "Bounced: no" in ann["Body"] and "Unsubscribed: no" in ann["Body"]
    bob = _row(notes, ParentId=PEOPLE["bob@x.com"][0])
    assert "Bounced: soft (2026-03-02 15:01 UTC)" in bob["Body"]
    assert "Unsubscribed: 2026-03-03 09:00 UTC" in bob["Body"]
    assert "Latest status: Unsubscribed (2026-03-03 09:00 UTC)" in bob["Body"]


def test_person_reached_at_two_addresses_gets_one_note_with_both() -> None:
    shared = {"ann@x.com": ("0035g0000000009AAA", "Contact"), "bob@x.com": ("0035g0000000009AAA", "Contact")}
    notes = _notes(people=shared)
    assert len(notes) == 1
    assert "Sent to ann@x.com" in notes.loc[0, "Body"] and "Sent to bob@x.com" in notes.loc[0, "Body"]


def test_note_title_and_body_fit_salesforce_limits_with_marker() -> None:
    many_clicks = events(
        *[
            ("ann@x.com", "click", f"2026-03-02 15:{i % 60:02d}", f"https://example.com/{i}/" + "p" * 200)
            for i in range(200)
        ]
    )
    notes = _notes(many_clicks, title="T" * 200)
    ann = _row(notes, ParentId=PEOPLE["ann@x.com"][0])
    assert len(ann["Title"]) == 80 and ann["Title"].endswith(TRUNCATION_MARKER + " (c1)")
    assert len(ann["Body"]) == 32000 and ann["Body"].endswith(TRUNCATION_MARKER)
    assert "Bounced: no\nUnsubscribed: no\nClicks: 200" in ann["Body"]
    assert set(ann["truncated_fields"].split(",")) == {"Title", "Body"}


def test_automation_note_says_send_time_is_approximate() -> None:
    event_frame = events(("ann@x.com", "open", "2026-03-02 15:05"))
    members = statuses(recipients("ann@x.com", exact=False), event_frame)
    notes = activity.desired_notes(members, event_frame, matches(PEOPLE), report())
    assert "approximate" in notes.loc[0, "Body"]
    assert bool(notes.loc[0, "sent_at_is_exact"]) is False


def test_note_changes_in_place_when_activity_changes() -> None:
    before, after = _notes(), _notes(pd.concat([_activity(), events(("ann@x.com", "open", "2026-03-09 10:00"))]))
    assert list(before["sync_key"]) == list(after["sync_key"])
    changed = before["sync_key"][content_hashes(before) != content_hashes(after)]
    assert list(changed) == [f"c1|{PEOPLE['ann@x.com'][0]}"]


def _attachments(html_frame: pd.DataFrame, **options) -> pd.DataFrame:
    members = statuses(recipients("ann@x.com", "bob@x.com"), _activity())
    return activity.desired_attachments(html_frame, members, matches(PEOPLE), report(), **options)


def test_attachment_carries_the_sent_html_on_each_person() -> None:
    html = "<html><body>Grüße</body></html>"
    attachments = _attachments(content(html))
    assert sorted(attachments["ParentId"]) == sorted(p[0] for p in PEOPLE.values())
    assert sorted(attachments["sync_key"]) == sorted(f"c1|{p[0]}" for p in PEOPLE.values())
    row = attachments.iloc[0]
    assert row["ContentType"] == "text/html"
    assert row["Name"] == "mailchimp-c1.html"
    assert base64.b64decode(row["Body"]).decode("utf-8") == html
    assert attachments["reject_reason"].isna().all()
    assert activity.attachment_bytes(attachments) == 2 * len(html.encode("utf-8"))


def test_email_over_25_mb_is_refused_with_reason_never_truncated() -> None:
    html = "<html>" + "x" * activity.ATTACHMENT_MAX_BYTES + "</html>"
    attachments = _attachments(content(html))
    assert attachments["Body"].isna().all()
    reason = attachments.loc[0, "reject_reason"]
    assert f"is {len(html)} bytes" in reason and "26214400" in reason and "never truncated" in reason
    assert activity.attachment_bytes(attachments) == 0
    assert (
        diff_against_ledger(
            attachments, pd.DataFrame(columns=["sync_key", "salesforce_id", "content_hash", "last_result"])
        )["action"]
        == "rejected"
    ).all()


def test_size_limit_is_exact_and_missing_html_is_refused() -> None:
    html = "<p>" + "é" * 10 + "</p>"  # 27 bytes in UTF-8, 17 characters
    size = len(html.encode("utf-8"))
    assert _attachments(content(html), max_bytes=size)["reject_reason"].isna().all()
    assert _attachments(content(html), max_bytes=size - 1)["reject_reason"].notna().all()
    missing = _attachments(content(None))
    assert missing["reject_reason"].str.contains("no sent HTML for campaign c1").all()


def test_empty_inputs_give_empty_frames_with_the_engine_shape() -> None:
    empty_events = _activity().iloc[0:0]
    members = statuses(recipients("ann@x.com"), empty_events)
    tasks = activity.desired_tasks(empty_events, members, matches(PEOPLE), report())
    assert tasks.empty and {"sync_key", "WhoId", "Subject"} <= set(tasks.columns)
    notes = activity.desired_notes(members, empty_events, matches(PEOPLE), report())
    assert len(notes) == 1 and "Opens: 0" in notes.loc[0, "Body"] and "Clicks: 0" in notes.loc[0, "Body"]


def test_note_titles_keep_the_campaign_id_so_same_named_campaigns_differ() -> None:
    names = pd.Series(["Weekly news", "Weekly news", "N" * 100], index=["a1b2c3d4e5", "f6e5d4c3b2", "c9"])
    titles = activity.note_titles(names)
    assert titles.loc["a1b2c3d4e5", "title"] == "Email response: Weekly news (a1b2c3d4e5)"
    assert titles["title"].is_unique
    long_title = titles.loc["c9", "title"]
    assert len(long_title) == 80 and long_title.endswith(TRUNCATION_MARKER + " (c9)")
    assert list(titles["cut"]) == [False, False, True]
