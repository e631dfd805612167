"""Property tests: order and duplicate invariance, one status per recipient, totals = sums, a plain-Python oracle."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign_pipeline.core.metrics import campaign_totals, member_statuses
from campaign_pipeline.core.schemas import CampaignTotals, MemberStatuses
from campaign_pipeline_tests.core.frames import email_id, events, recipients, report

# A small pool with case variants of one person, so ties, repeats and case folding happen often.
ADDRESSES = ["ann@example.com", "ANN@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]
INSTANTS = ["2024-03-01 09:00", "2024-03-01 10:00", "2024-03-01 10:00:01", "2024-03-02 08:00"]
URLS = ["https://x.example/a", "https://x.example/b"]
STATUS_BY_ACTION = {"click": "Clicked", "open": "Opened", "bounce": "Bounced", "unsubscribe": "Unsubscribed"}
TIE_RANK = {"Clicked": 3, "Opened": 2, "Bounced": 1, "Unsubscribed": 0}

event_rows = st.lists(
    st.tuples(
        st.sampled_from(ADDRESSES),
        st.sampled_from(["open", "click", "bounce", "unsubscribe"]),
        st.sampled_from(INSTANTS),
        st.sampled_from(URLS),
        st.sampled_from(["hard", "soft"]),
    ).map(lambda row: row[:3] + ((row[3],) if row[1] == "click" else (row[4],) if row[1] == "bounce" else ())),
    max_size=25,
)
recipient_rows = st.dictionaries(
    st.sampled_from(["ann@example.com", "bob@example.com", "cy@example.com", "eve@example.com"]),
    st.sampled_from(["sent", "sent", "sent", "hard", "soft"]),
).map(lambda chosen: [(address, status) for address, status in sorted(chosen.items())])

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@PROPERTY_SETTINGS
@given(recipient_rows, event_rows, st.integers(0, 2**31 - 1), st.sampled_from(["latest", "highest_rank"]))
def test_invariant_to_row_order_and_to_duplicated_events(recipient_list, event_list, seed, rule):
    recipient_frame, event_frame = recipients(*recipient_list), events(*event_list)
    baseline = member_statuses(recipient_frame, event_frame, status_rule=rule)
    reordered = member_statuses(shuffled(recipient_frame, seed), shuffled(event_frame, seed), status_rule=rule)
    doubled = pd.concat([event_frame, event_frame.sample(frac=0.5, random_state=seed)], ignore_index=True)
    duplicated = member_statuses(recipient_frame, shuffled(doubled, seed + 1), status_rule=rule)
    pd.testing.assert_frame_equal(baseline, reordered)
    pd.testing.assert_frame_equal(baseline, duplicated)


@PROPERTY_SETTINGS
@given(recipient_rows, event_rows)
def test_one_status_per_recipient_and_every_member_kept(recipient_list, event_list):
    recipient_frame, event_frame = recipients(*recipient_list), events(*event_list)
    result = member_statuses(recipient_frame, event_frame)
    MemberStatuses.validate(result, lazy=True)
    recipient_rows_out = result[result["is_recipient"]]
    assert sorted(recipient_rows_out["email_id"]) == sorted(recipient_frame["email_id"])
    assert set(result["email_id"]) == set(recipient_frame["email_id"]) | set(event_frame["email_id"])
    assert result["latest_status"].notna().all()


@PROPERTY_SETTINGS
@given(recipient_rows, event_rows)
def test_totals_are_sums_over_member_metrics(recipient_list, event_list):
    result = member_statuses(recipients(*recipient_list), events(*event_list))
    totals_frame = campaign_totals(result, report(forwards_count=2))
    CampaignTotals.validate(totals_frame, lazy=True)
    totals = totals_frame.iloc[0]
    members = result[result["is_recipient"]]
    assert totals["emails_sent"] == len(members)
    assert totals["unique_opens"] == members["unique_opens"].sum() == members["was_opened"].sum()
    assert totals["total_opens"] == members["total_opens"].sum()
    assert totals["unique_subscriber_clicks"] == members["unique_clicks"].sum()
    assert totals["total_clicks"] == members["total_clicks"].sum()
    assert totals["hard_bounces"] == (members["bounce_type"] == "hard").sum()
    assert totals["soft_bounces"] == (members["bounce_type"] == "soft").sum()
    assert totals["unsubscribes"] == members["was_unsubscribed"].sum()
    assert totals["delivered"] == len(members) - members["was_bounced"].sum()
    assert totals["non_recipient_members"] == (~result["is_recipient"]).sum()
    assert totals["forwards"] == 2


@PROPERTY_SETTINGS
@given(recipient_rows, event_rows)
def test_latest_status_matches_a_plain_python_oracle(recipient_list, event_list):
    """The rule written the obvious way, row by row, must agree with the vectorised one."""
    result = member_statuses(recipients(*recipient_list), events(*event_list)).set_index("email_id")
    send = pd.Timestamp("2024-03-01 09:00", tz="UTC")
    candidates: dict[str, set] = {}
    for address, action, instant, *_ in event_list:
        candidates.setdefault(email_id(address), set()).add((pd.Timestamp(instant, tz="UTC"), STATUS_BY_ACTION[action]))
    for address, send_status in recipient_list:
        if send_status in ("hard", "soft"):
            candidates.setdefault(email_id(address), set()).add((send, "Bounced"))
    for address, _ in recipient_list:
        candidates.setdefault(email_id(address), set())
    for member, found in candidates.items():
        if found:
            instant, status = max(found, key=lambda item: (item[0], TIE_RANK[item[1]]))
        else:
            instant, status = send, "Sent"
        assert (result.loc[member, "latest_status"], result.loc[member, "latest_status_at"]) == (status, instant)
