"""The status rules of design §2, on literal per-member frames."""

from __future__ import annotations

import pandas as pd
import pytest

from campaign_pipeline.core.statuses import (
    RULE_INPUT_COLUMNS,
    highest_rank_rule,
    latest_status_rule,
    status_rule,
)
from campaign_pipeline_tests.core.frames import SEND, at

NAT = pd.NaT


def member_events(**columns) -> pd.DataFrame:
    """One member row; columns default to no event and a plain send at SEND."""
    row = {column: NAT for column in RULE_INPUT_COLUMNS}
    row["send_status"] = "sent"
    row["sent_at"] = SEND
    row.update(columns)
    frame = pd.DataFrame([row], columns=list(RULE_INPUT_COLUMNS))
    for column in RULE_INPUT_COLUMNS:
        if column != "send_status":
            frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["send_status"] = frame["send_status"].astype(object)
    return frame


def only(result: pd.DataFrame) -> tuple[str, pd.Timestamp]:
    return result["latest_status"].iloc[0], result["latest_status_at"].iloc[0]


def test_most_recent_event_wins():
    result = latest_status_rule(
        member_events(last_click_at=at("2024-03-01 10:00"), last_open_at=at("2024-03-01 11:00"))
    )
    assert only(result) == ("Opened", at("2024-03-01 11:00"))


@pytest.mark.parametrize(
    ("winner", "loser", "expected"),
    [
        ("last_click_at", "last_open_at", "Clicked"),
        ("last_open_at", "last_bounce_at", "Opened"),
        ("last_bounce_at", "last_unsubscribe_at", "Bounced"),
        ("last_click_at", "last_unsubscribe_at", "Clicked"),
    ],
)
def test_ties_at_one_instant_rank_clicked_opened_bounced_unsubscribed(winner, loser, expected):
    instant = at("2024-03-01 10:00")
    assert only(latest_status_rule(member_events(**{winner: instant, loser: instant}))) == (expected, instant)


def test_all_four_at_one_instant_is_clicked():
    instant = at("2024-03-02 08:00")
    frame = member_events(
        last_click_at=instant, last_open_at=instant, last_bounce_at=instant, last_unsubscribe_at=instant
    )
    assert only(latest_status_rule(frame)) == ("Clicked", instant)


def test_recipient_without_events_is_sent_at_send_time():
    assert only(latest_status_rule(member_events())) == ("Sent", SEND)


@pytest.mark.parametrize("send_status", ["hard", "soft"])
def test_sent_to_bounce_counts_as_bounce_at_send_time_without_bounce_event(send_status):
    assert only(latest_status_rule(member_events(send_status=send_status))) == ("Bounced", SEND)


def test_sent_to_bounce_then_later_open_is_opened():
    opened = at("2024-03-01 12:00")
    assert only(latest_status_rule(member_events(send_status="soft", last_open_at=opened))) == ("Opened", opened)


def test_highest_rank_rule_keeps_click_after_later_unsubscribe():
    frame = member_events(last_click_at=at("2024-03-01 10:00"), last_unsubscribe_at=at("2024-03-05 10:00"))
    assert only(latest_status_rule(frame)) == ("Unsubscribed", at("2024-03-05 10:00"))
    assert only(highest_rank_rule(frame)) == ("Clicked", at("2024-03-01 10:00"))


def test_highest_rank_rule_without_events_is_sent():
    assert only(highest_rank_rule(member_events())) == ("Sent", SEND)


def test_rules_are_vectorised_over_many_members():
    frame = pd.concat(
        [
            member_events(),
            member_events(last_open_at=at("2024-03-01 10:00")),
            member_events(send_status="hard"),
        ],
        ignore_index=True,
    )
    assert latest_status_rule(frame)["latest_status"].tolist() == ["Sent", "Opened", "Bounced"]


def test_status_rule_resolves_profile_names():
    assert status_rule("latest") is latest_status_rule
    assert status_rule("highest_rank") is highest_rank_rule


def test_unknown_status_rule_is_an_error_naming_the_allowed_values():
    with pytest.raises(ValueError, match="allowed values: latest, highest_rank"):
        status_rule("newest")


def test_naive_datetimes_are_refused():
    frame = member_events()
    frame["sent_at"] = frame["sent_at"].dt.tz_localize(None)
    with pytest.raises(TypeError, match="sent_at"):
        latest_status_rule(frame)


def test_missing_input_column_is_named():
    with pytest.raises(KeyError, match="last_click_at"):
        latest_status_rule(member_events().drop(columns="last_click_at"))
