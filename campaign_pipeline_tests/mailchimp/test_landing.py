"""Incremental landing in Postgres: truth on first fetch, exactly the new events later, cursor kept across restarts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.core.events import parse_email_activity
from campaign_pipeline.mailchimp.landing import LandingStore, fetch_and_land_events, fetch_and_land_recipients
from campaign_pipeline.sandbox.mailchimp_oracle import malformed_records, truth_events, truth_recipients
from campaign_pipeline.storage.database import PIPELINE_SCHEMA

COLUMNS = ["campaign_id", "email_id", "email_address", "action", "timestamp", "url", "bounce_type"]


def comparable(events: pd.DataFrame) -> pd.DataFrame:
    frame = events[COLUMNS].copy()
    frame["url"] = frame["url"].fillna("")
    frame["bounce_type"] = frame["bounce_type"].fillna("")
    return frame.sort_values(COLUMNS).reset_index(drop=True)


@pytest.fixture
def store(pg_engine) -> LandingStore:
    landing = LandingStore(pg_engine)
    with pg_engine.begin() as conn:
        for table in ("landed_email_events", "mailchimp_fetch_cursors", "quarantined_records", "landed_recipients"):
            conn.execute(sa.text(f'TRUNCATE "{PIPELINE_SCHEMA}".{table}'))
    return landing


def test_first_fetch_lands_exactly_the_truth_and_quarantines_the_malformed(account, mailchimp, store):
    campaign_id = account.campaign_ids()[-1]
    sync = fetch_and_land_events(mailchimp, store, campaign_id)
    truth = truth_events(account, campaign_id)
    landed = store.events(campaign_id)
    assert sync.since is None
    assert sync.landing.new_events == sync.landing.total_events == len(truth) == len(landed)
    pd.testing.assert_frame_equal(comparable(landed), comparable(truth), check_dtype=False)
    assert sync.landing.cursor == truth.loc[truth["action"] != "unsubscribe", "timestamp"].max()

    malformed = malformed_records(account, campaign_id)
    quarantined = store.quarantined(campaign_id)
    assert len(malformed) == len(quarantined) == sync.landing.new_quarantined >= 3
    reasons = " / ".join(quarantined["reason"])
    assert "missing action" in reasons and "unparseable timestamp" in reasons and "missing email_address" in reasons
    assert all(isinstance(json.loads(record), dict) for record in quarantined["record"])


def test_refetch_after_late_activity_adds_exactly_the_new_events(account, mailchimp, store):
    campaign_id = account.campaign_ids()[-1]
    first = fetch_and_land_events(mailchimp, store, campaign_id)
    before = truth_events(account, campaign_id)
    assert account.simulate_late_activity(hours=48) > 0
    after = truth_events(account, campaign_id)
    late = len(after) - len(before)
    assert late > 0

    second = fetch_and_land_events(mailchimp, store, campaign_id)
    assert second.since == first.landing.cursor - pd.Timedelta(minutes=mailchimp.overlap_minutes)
    assert second.landing.new_events == late
    assert second.landing.total_events == len(after)
    pd.testing.assert_frame_equal(comparable(store.events(campaign_id)), comparable(after), check_dtype=False)
    assert second.landing.cursor > first.landing.cursor
    # The re-fetch only asked for activity after the cursor: far fewer pages than a full fetch.
    assert second.calls.pages < first.calls.pages

    third = fetch_and_land_events(mailchimp, store, campaign_id)
    assert third.landing.new_events == 0
    assert third.landing.new_quarantined == 0
    assert third.landing.cursor == second.landing.cursor


def test_cursor_and_events_survive_a_restart(account, mailchimp, store, pg_engine, make_resource, sandbox):
    campaign_id = account.campaign_ids()[0]
    first = fetch_and_land_events(mailchimp, store, campaign_id)
    pg_engine.dispose()
    restarted = LandingStore(pg_engine)
    assert restarted.cursor(campaign_id) == first.landing.cursor
    fresh_resource = make_resource(sandbox)
    again = fetch_and_land_events(fresh_resource, restarted, campaign_id)
    assert again.since is not None
    assert again.landing.new_events == 0
    assert again.landing.total_events == first.landing.total_events


def test_landed_events_are_never_deleted_when_mailchimp_forgets_them(store):
    campaign_id = "keep1"
    records = [
        {"email_address": "gone@x.com", "activity": [{"action": "open", "timestamp": "2026-01-05T10:00:00+00:00"}]},
        {"email_address": "stay@x.com", "activity": [{"action": "open", "timestamp": "2026-01-05T11:00:00+00:00"}]},
    ]
    full = parse_email_activity(campaign_id, records)
    store.land(campaign_id, full.frame, full.quarantined, full.frame["timestamp"].max())
    # The member was deleted in Mailchimp: the next fetch no longer lists them.
    partial = parse_email_activity(campaign_id, records[1:])
    result = store.land(campaign_id, partial.frame, partial.quarantined, partial.frame["timestamp"].max())
    assert result.new_events == 0 and result.total_events == 2
    assert sorted(store.events(campaign_id)["email_address"]) == ["gone@x.com", "stay@x.com"]


def test_cursor_never_moves_backwards(store):
    late = pd.Timestamp("2026-01-10T00:00:00Z")
    empty = parse_email_activity("c9", [])
    store.land("c9", empty.frame, empty.quarantined, late)
    result = store.land("c9", empty.frame, empty.quarantined, late - pd.Timedelta(days=3))
    assert result.cursor == late == store.cursor("c9")


def test_round_trip_keeps_dtypes_and_missing_values(store):
    parsed = parse_email_activity(
        "rt1",
        [
            {
                "email_address": "Zoë.Ünïcode@Example.com",
                "activity": [
                    {"action": "click", "timestamp": "2026-01-05T10:00:00.250+01:00", "url": 'https://x/?a=1,b="2"'},
                    {"action": "bounce", "timestamp": "2026-01-05T10:00:00+00:00", "type": "hard"},
                ],
            }
        ],
    )
    store.land("rt1", parsed.frame, parsed.quarantined, None)
    pd.testing.assert_frame_equal(store.events("rt1"), parsed.frame)


def test_member_deleted_in_mailchimp_keeps_landed_events(account, mailchimp, store):
    campaign_id = account.campaign_ids()[-1]
    first = fetch_and_land_events(mailchimp, store, campaign_id)
    truth = truth_events(account, campaign_id)
    clicker = truth.loc[truth["action"] == "click", "email_address"].iloc[0]
    their_events = int((truth["email_id"] == truth.loc[truth["email_address"] == clicker, "email_id"].iloc[0]).sum())
    account.simulate_member_deletion(clicker)
    assert len(truth_events(account, campaign_id)) == len(truth) - their_events  # Mailchimp forgot them
    account.simulate_late_activity(hours=1)
    again = fetch_and_land_events(mailchimp, store, campaign_id)
    assert again.landing.total_events >= first.landing.total_events
    landed = store.events(campaign_id)
    assert (landed["email_address"].str.lower() == clicker.lower()).sum() == their_events


def test_recipients_of_a_sent_campaign_are_read_once(account, sandbox, mailchimp, store):
    regular = next(cid for cid in account.campaign_ids() if not account.spec(cid).is_automation)
    first = fetch_and_land_recipients(mailchimp, store, regular)
    truth = truth_recipients(account, regular)
    assert first.fetched_sent_to and first.new_members == len(truth)
    key = ["email_id"]
    pd.testing.assert_frame_equal(
        first.recipients.sort_values(key).reset_index(drop=True),
        truth.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    sent_to_calls = sandbox.calls("/sent-to")
    again = fetch_and_land_recipients(mailchimp, store, regular)
    assert not again.fetched_sent_to
    assert again.calls.api_calls == 1  # the report only
    assert sandbox.calls("/sent-to") == sent_to_calls
    pd.testing.assert_frame_equal(again.recipients, first.recipients)


def test_automation_recipients_are_re_read_as_they_grow(account, mailchimp, store):
    automation = next(cid for cid in account.campaign_ids() if account.spec(cid).is_automation)
    first = fetch_and_land_recipients(mailchimp, store, automation)
    truth_first = truth_recipients(account, automation)
    assert first.fetched_sent_to and not first.recipients["sent_at_is_exact"].any()
    account.simulate_late_activity(hours=24 * 5)
    grown = len(truth_recipients(account, automation))
    again = fetch_and_land_recipients(mailchimp, store, automation)
    assert again.fetched_sent_to
    assert first.landed_members == len(truth_first)
    assert again.new_members == grown - first.landed_members > 0
    assert len(again.recipients) == grown


def test_same_second_repeats_land_once_each_and_a_refetch_adds_none(store):
    click = {"action": "click", "timestamp": "2026-01-05T10:00:00+00:00", "url": "https://shop.example/a"}
    record = {"email_address": "rep@example.com", "activity": [click, dict(click), {**click, "action": "open"}]}
    parsed = parse_email_activity("rep1", [record])
    first = store.land("rep1", parsed.frame, parsed.quarantined, parsed.frame["timestamp"].max())
    again = parse_email_activity("rep1", [record])
    second = store.land("rep1", again.frame, again.quarantined, again.frame["timestamp"].max())
    assert (first.new_events, second.new_events, second.total_events) == (3, 0, 3)
    landed = store.events("rep1")
    assert sorted(landed.loc[landed["action"] == "click", "occurrence"]) == [0, 1]
    assert str(landed["occurrence"].dtype) == "int64"


def test_a_table_landed_before_occurrences_gains_the_column(pg_engine, store):
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{PIPELINE_SCHEMA}".landed_email_events DROP COLUMN occurrence'))
    LandingStore(pg_engine)
    parsed = parse_email_activity(
        "old1",
        [{"email_address": "o@example.com", "activity": [{"action": "open", "timestamp": "2026-01-05T10:00:00Z"}]}],
    )
    store.land("old1", parsed.frame, parsed.quarantined, None)
    assert store.events("old1")["occurrence"].tolist() == [0]
