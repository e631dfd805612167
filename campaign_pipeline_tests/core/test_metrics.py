"""member_statuses, campaign_totals and reconcile_totals on literal frames: the cases of issue 4."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from campaign_pipeline.core import metrics
from campaign_pipeline.core.metrics import campaign_totals, member_statuses, reconcile_totals
from campaign_pipeline.core.schemas import CampaignTotals, MemberStatuses
from campaign_pipeline_tests.core.frames import SEND, at, email_id, events, recipients, report, row_of


def statuses(recipient_frame: pd.DataFrame, event_frame: pd.DataFrame, rule: str = "latest") -> pd.DataFrame:
    result = member_statuses(recipient_frame, event_frame, status_rule=rule)
    MemberStatuses.validate(result, lazy=True)
    return result


def totals_of(member_frame: pd.DataFrame, report_frame: pd.DataFrame | None = None) -> pd.Series:
    result = campaign_totals(member_frame, report() if report_frame is None else report_frame)
    CampaignTotals.validate(result, lazy=True)
    assert len(result) == 1
    return result.iloc[0]


def test_tie_between_click_and_open_is_clicked():
    result = statuses(
        recipients(("ann@example.com",)),
        events(
            ("ann@example.com", "open", "2024-03-01 10:00"),
            ("ann@example.com", "click", "2024-03-01 10:00", "https://shop.example/a"),
        ),
    )
    member = row_of(result, "ann@example.com")
    assert member["latest_status"] == "Clicked"
    assert member["latest_status_at"] == at("2024-03-01 10:00")


def test_offsets_compare_as_instants():
    # 11:30+02:00 is 09:30 UTC: earlier than the 10:00 UTC open although its wall clock is later.
    result = statuses(
        recipients(("ann@example.com",)),
        events(
            ("ann@example.com", "open", "2024-03-01 10:00+00:00"),
            ("ann@example.com", "unsubscribe", "2024-03-01 11:30+02:00"),
        ),
    )
    assert row_of(result, "ann@example.com")["latest_status"] == "Opened"


def test_mixed_case_addresses_are_one_member():
    result = statuses(
        recipients(("Ann.Smith@Example.com",)),
        events(
            ("ann.smith@example.com", "open", "2024-03-01 10:00"),
            ("ANN.SMITH@EXAMPLE.COM ", "open", "2024-03-01 11:00"),
            ("Ann.Smith@example.COM", "click", "2024-03-01 11:05", "https://shop.example/a"),
        ),
    )
    assert len(result) == 1
    member = result.iloc[0]
    assert member["email_address"] == "Ann.Smith@Example.com"  # as sent-to wrote it
    assert member["is_recipient"]
    assert (member["total_opens"], member["unique_opens"], member["total_clicks"]) == (2, 1, 1)
    assert member["latest_status"] == "Clicked"


def test_recipients_without_events_are_sent_with_empty_metrics():
    result = statuses(recipients(("ann@example.com",), ("bob@example.com",)), events())
    assert result["latest_status"].tolist() == ["Sent", "Sent"]
    assert (result["latest_status_at"] == SEND).all()
    assert (result[["total_opens", "unique_opens", "total_clicks", "distinct_urls_clicked"]] == 0).all().all()
    assert result["first_open_at"].isna().all() and result["last_clicked_url"].isna().all()
    assert not result[["was_opened", "was_clicked", "was_bounced", "was_unsubscribed"]].any().any()
    assert result["time_to_open_minutes"].isna().all()


def test_bounce_then_open_is_opened_and_open_then_bounce_is_bounced():
    result = statuses(
        recipients(("ann@example.com",), ("bob@example.com",)),
        events(
            ("ann@example.com", "bounce", "2024-03-01 09:01", "soft"),
            ("ann@example.com", "open", "2024-03-02 10:00"),
            ("bob@example.com", "open", "2024-03-01 09:30"),
            ("bob@example.com", "bounce", "2024-03-01 10:00", "hard"),
        ),
    )
    ann, bob = row_of(result, "ann@example.com"), row_of(result, "bob@example.com")
    assert (ann["latest_status"], ann["bounce_type"], ann["was_bounced"]) == ("Opened", "soft", True)
    assert (bob["latest_status"], bob["bounce_type"]) == ("Bounced", "hard")
    assert bob["latest_status_at"] == at("2024-03-01 10:00")


def test_sent_to_bounce_without_event_is_bounced_at_send_time():
    result = statuses(recipients(("ann@example.com", "hard"), ("bob@example.com", "soft")), events())
    assert result["latest_status"].tolist() == ["Bounced", "Bounced"]
    assert sorted(result["bounce_type"]) == ["hard", "soft"]
    assert (result["latest_status_at"] == SEND).all()


def test_hard_outranks_soft_bounce_type():
    result = statuses(
        recipients(("ann@example.com", "soft")),
        events(("ann@example.com", "bounce", "2024-03-01 09:05", "hard")),
    )
    assert row_of(result, "ann@example.com")["bounce_type"] == "hard"


def test_unsubscribe_then_open_is_opened_and_open_then_unsubscribe_is_unsubscribed():
    result = statuses(
        recipients(("ann@example.com",), ("bob@example.com",)),
        events(
            ("ann@example.com", "unsubscribe", "2024-03-01 10:00"),
            ("ann@example.com", "open", "2024-03-01 12:00"),
            ("bob@example.com", "open", "2024-03-01 10:00"),
            ("bob@example.com", "unsubscribe", "2024-03-01 12:00"),
        ),
    )
    ann, bob = row_of(result, "ann@example.com"), row_of(result, "bob@example.com")
    assert (ann["latest_status"], ann["was_unsubscribed"]) == ("Opened", True)
    assert ann["unsubscribed_at"] == at("2024-03-01 10:00")
    assert (bob["latest_status"], bob["was_unsubscribed"]) == ("Unsubscribed", True)


def test_highest_rank_rule_is_selectable():
    result = statuses(
        recipients(("bob@example.com",)),
        events(
            ("bob@example.com", "click", "2024-03-01 10:00", "https://shop.example/a"),
            ("bob@example.com", "unsubscribe", "2024-03-01 12:00"),
        ),
        rule="highest_rank",
    )
    assert row_of(result, "bob@example.com")["latest_status"] == "Clicked"


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="status_rule"):
        member_statuses(recipients(("ann@example.com",)), events(), status_rule="newest")


def test_duplicated_events_count_once():
    one_open = events(("ann@example.com", "open", "2024-03-01 10:00"))
    click = events(("ann@example.com", "click", "2024-03-01 10:05", "https://shop.example/a"))
    # The same event fetched twice, once with a differently cased address: same identity.
    refetched = events(("ANN@example.com", "open", "2024-03-01 10:00"))
    result = statuses(recipients(("ann@example.com",)), pd.concat([one_open, click, click, refetched]))
    member = row_of(result, "ann@example.com")
    assert (member["total_opens"], member["total_clicks"]) == (1, 1)
    totals = totals_of(result)
    assert (totals["total_opens"], totals["total_clicks"]) == (1, 1)


def test_events_of_non_recipients_are_kept_and_reported():
    result = statuses(
        recipients(("ann@example.com",)),
        events(
            ("ann@example.com", "open", "2024-03-01 10:00"),
            ("stranger@example.com", "open", "2024-03-01 10:00"),
            ("Stranger@Example.com", "click", "2024-03-01 10:02", "https://shop.example/a"),
        ),
    )
    stranger = row_of(result, "stranger@example.com")
    assert not stranger["is_recipient"]
    assert pd.isna(stranger["send_status"]) and pd.isna(stranger["sent_at"])
    assert stranger["latest_status"] == "Clicked"
    assert stranger["email_address"] == "Stranger@Example.com"  # from the latest event
    totals = totals_of(result)
    assert totals["non_recipient_members"] == 1
    assert (totals["emails_sent"], totals["unique_opens"], totals["total_clicks"]) == (1, 1, 0)


def test_automation_campaign_carries_approximate_send_flag():
    result = statuses(
        recipients(("ann@example.com",), ("bob@example.com",), exact=False),
        events(("ann@example.com", "open", "2024-03-01 09:30")),
    )
    assert not result["sent_at_is_exact"].any()
    # Minutes from an approximate send time are not a figure to show.
    assert pd.isna(row_of(result, "ann@example.com")["time_to_open_minutes"])
    assert row_of(result, "bob@example.com")["latest_status"] == "Sent"


def test_automation_send_time_is_never_after_the_members_first_activity():
    # Mailchimp's send_time of an automation email can be later than a recipient's activity.
    late_send = pd.Timestamp("2024-03-02 09:00", tz="UTC")
    result = statuses(
        recipients(
            ("ann@example.com",), ("bob@example.com",), ("cy@example.com", "hard"), sent_at=late_send, exact=False
        ),
        events(
            ("ann@example.com", "open", "2024-03-01 09:30"),
            ("ann@example.com", "click", "2024-03-01 09:20", "https://shop.example/a"),
            ("bob@example.com", "open", "2024-03-03 10:00"),
        ),
    )
    ann, bob, cy = (row_of(result, a) for a in ("ann@example.com", "bob@example.com", "cy@example.com"))
    assert ann["sent_at"] == at("2024-03-01 09:20")  # the first event of any kind bounds the send
    assert bob["sent_at"] == late_send and cy["sent_at"] == late_send  # already before their activity
    assert (cy["latest_status"], cy["latest_status_at"]) == ("Bounced", late_send)
    assert (result["sent_at"] <= result["first_open_at"].fillna(result["sent_at"])).all()
    assert result["time_to_open_minutes"].isna().all()


def test_exact_send_times_are_left_alone_and_keep_time_to_open():
    result = statuses(recipients(("ann@example.com",)), events(("ann@example.com", "open", "2024-03-01 09:45")))
    ann = row_of(result, "ann@example.com")
    assert ann["sent_at"] == SEND and ann["time_to_open_minutes"] == pytest.approx(45.0)


def test_empty_campaign_gives_typed_empty_frames_and_a_zero_totals_row():
    result = statuses(recipients(), events())
    assert result.empty and list(result.columns) == list(metrics.MEMBER_STATUS_COLUMNS)
    totals = totals_of(result, report(forwards_count=3, abuse_reports=1))
    assert (totals["emails_sent"], totals["delivered"], totals["forwards"], totals["abuse_reports"]) == (0, 0, 3, 1)
    assert (totals["open_rate"], totals["click_rate"], totals["click_to_open_rate"]) == (0.0, 0.0, 0.0)


def test_no_members_and_no_report_is_an_empty_totals_frame():
    result = campaign_totals(statuses(recipients(), events()), report().iloc[:0])
    CampaignTotals.validate(result)
    assert result.empty


def test_member_metrics_follow_dbt_mailchimp_definitions():
    result = statuses(
        recipients(("ann@example.com",)),
        events(
            ("ann@example.com", "open", "2024-03-01 09:45"),
            ("ann@example.com", "open", "2024-03-01 12:00"),
            ("ann@example.com", "open", "2024-03-02 08:00"),
            ("ann@example.com", "click", "2024-03-01 12:01", "https://shop.example/b"),
            ("ann@example.com", "click", "2024-03-01 12:02", "https://shop.example/a"),
            ("ann@example.com", "click", "2024-03-01 12:03", "https://shop.example/b"),
        ),
    )
    ann = row_of(result, "ann@example.com")
    assert (ann["total_opens"], ann["unique_opens"], ann["total_clicks"], ann["unique_clicks"]) == (3, 1, 3, 1)
    assert (ann["first_open_at"], ann["last_open_at"]) == (at("2024-03-01 09:45"), at("2024-03-02 08:00"))
    assert (ann["first_click_at"], ann["last_click_at"]) == (at("2024-03-01 12:01"), at("2024-03-01 12:03"))
    assert ann["time_to_open_minutes"] == pytest.approx(45.0)
    assert ann["last_clicked_url"] == "https://shop.example/b"
    assert ann["distinct_urls_clicked"] == 2
    assert ann["latest_status"] == "Opened" and ann["latest_status_at"] == at("2024-03-02 08:00")
    assert ann["was_opened"] and ann["was_clicked"] and not ann["was_bounced"]


def test_last_clicked_url_tie_is_decided_by_url_not_row_order():
    clicks = [
        ("ann@example.com", "click", "2024-03-01 12:00", "https://shop.example/b"),
        ("ann@example.com", "click", "2024-03-01 12:00", "https://shop.example/a"),
    ]
    forward = statuses(recipients(("ann@example.com",)), events(*clicks))
    backward = statuses(recipients(("ann@example.com",)), events(*reversed(clicks)))
    assert row_of(forward, "ann@example.com")["last_clicked_url"] == "https://shop.example/b"
    pd.testing.assert_frame_equal(forward, backward)


def test_several_campaigns_in_one_call_stay_apart():
    result = statuses(
        pd.concat([recipients(("ann@example.com",)), recipients(("ann@example.com",), campaign_id="c2")]),
        pd.concat(
            [
                events(("ann@example.com", "open", "2024-03-01 10:00")),
                events(("ann@example.com", "click", "2024-03-01 10:00", "https://x.example"), campaign_id="c2"),
            ]
        ),
    )
    assert result["campaign_id"].tolist() == ["c1", "c2"]
    assert result["latest_status"].tolist() == ["Opened", "Clicked"]


def test_categorical_inputs_give_the_same_frame_as_strings():
    recipient_frame = recipients(("ann@example.com",), ("bob@example.com", "soft"), ("cy@example.com",))
    event_frame = events(
        ("ann@example.com", "open", "2024-03-01 10:00"),
        ("cy@example.com", "click", "2024-03-01 10:00", "https://x.example/b"),
        ("cy@example.com", "click", "2024-03-01 10:00", "https://x.example/a"),
        ("bob@example.com", "bounce", "2024-03-01 09:01", "soft"),
    )
    plain = statuses(recipient_frame, event_frame)
    # Categories out of sorted order, and unused ones, must not change any tie-break.
    urls = pd.CategoricalDtype(["https://x.example/z", "https://x.example/b", "https://x.example/a"])
    all_ids = pd.CategoricalDtype(sorted(set(recipient_frame["email_id"]) | set(event_frame["email_id"]))[::-1])
    categorical_recipients = recipient_frame.astype({"email_id": all_ids, "campaign_id": "category"})
    categorical_events = event_frame.astype(
        {
            "email_id": all_ids,
            "campaign_id": "category",
            "action": "category",
            "url": urls,
            "bounce_type": "category",
        }
    )
    pd.testing.assert_frame_equal(plain, member_statuses(categorical_recipients, categorical_events))


def test_recipient_listed_twice_is_an_error_naming_it():
    with pytest.raises(ValueError, match=email_id("ann@example.com")):
        member_statuses(recipients(("ann@example.com",), ("ANN@example.com",)), events())


def test_unknown_action_is_an_error_naming_the_event():
    frame = events(("ann@example.com", "open", "2024-03-01 10:00"))
    frame.loc[0, "action"] = "forward"
    with pytest.raises(ValueError, match=frame.loc[0, "event_id"]):
        member_statuses(recipients(("ann@example.com",)), frame)


@pytest.mark.parametrize("repeats", [False, True])
@pytest.mark.parametrize("timestamps", ["seconds", "nanoseconds_over_centuries"])
def test_event_deduplication_is_exact_on_both_paths(timestamps, repeats):
    generator = np.random.default_rng(7)
    size = 5000
    member = generator.integers(0, 300, size)
    action = generator.integers(0, 4, size)
    url = generator.integers(0, 5, size)
    occurrence = generator.integers(0, 3, size) if repeats else np.zeros(size, dtype=np.int64)
    if timestamps == "seconds":
        instant = 1_700_000_000_000_000_000 + generator.integers(0, 50, size) * 1_000_000_000
    else:  # does not pack into 63 bits: the lexsort path
        instant = generator.choice(np.array([-(2**62), 0, 2**62 - 1, 17]), size)
    distinct = metrics._distinct_sorted_events(member, instant, action, url, occurrence)
    expected = (
        pd.DataFrame({"member": member, "instant": instant, "action": action, "url": url, "occurrence": occurrence})
        .drop_duplicates()
        .sort_values(["member", "action", "instant", "url", "occurrence"])
        .drop(columns="occurrence")
    )
    # Same-second repeats are kept apart: more rows than the distinct (member, action, instant, url).
    if repeats:
        assert len(expected) > len(expected.drop_duplicates())
    got = pd.DataFrame(
        {"member": distinct.member, "instant": distinct.instant_ns, "action": distinct.action, "url": distinct.url}
    )
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())


def test_totals_count_recipients_and_rates_are_on_delivered():
    result = statuses(
        recipients(("a@example.com",), ("b@example.com",), ("c@example.com", "hard"), ("d@example.com",)),
        events(
            ("a@example.com", "open", "2024-03-01 10:00"),
            ("a@example.com", "open", "2024-03-01 11:00"),
            ("a@example.com", "click", "2024-03-01 11:01", "https://x.example"),
            ("b@example.com", "open", "2024-03-01 10:00"),
            ("d@example.com", "bounce", "2024-03-01 09:01", "soft"),
            ("b@example.com", "unsubscribe", "2024-03-01 12:00"),
        ),
    )
    totals = totals_of(result, report(forwards_count=4, forwards_opens=2, abuse_reports=1))
    assert totals["emails_sent"] == 4
    assert (totals["hard_bounces"], totals["soft_bounces"], totals["delivered"]) == (1, 1, 2)
    assert (totals["unique_opens"], totals["total_opens"]) == (2, 3)
    assert (totals["unique_subscriber_clicks"], totals["total_clicks"], totals["unsubscribes"]) == (1, 1, 1)
    assert (totals["forwards"], totals["forward_opens"], totals["abuse_reports"]) == (4, 2, 1)
    assert totals["open_rate"] == pytest.approx(1.0)
    assert totals["click_rate"] == pytest.approx(0.5)
    assert totals["click_to_open_rate"] == pytest.approx(0.5)


def test_reconcile_reports_only_numbers_beyond_tolerance():
    result = statuses(
        recipients(*[(f"m{i}@example.com",) for i in range(100)]),
        events(*[(f"m{i}@example.com", "open", "2024-03-01 10:00") for i in range(50)]),
    )
    computed = campaign_totals(result, report())
    close = report(emails_sent=101, unique_opens=50, opens_total=50, open_rate=0.5)
    assert reconcile_totals(computed, close, tolerance=0.02).empty
    drifted = report(emails_sent=100, unique_opens=60, opens_total=50, open_rate=0.6)
    differences = reconcile_totals(computed, drifted, tolerance=0.02)
    assert set(differences["metric"]) == {"unique_opens", "open_rate"}
    opens = differences.set_index("metric").loc["unique_opens"]
    assert (opens["computed"], opens["mailchimp"], opens["difference"]) == (50.0, 60.0, -10.0)
    assert opens["relative_difference"] == pytest.approx(10 / 60)
    assert reconcile_totals(computed, drifted, tolerance=0.5).empty


def test_reconcile_refuses_negative_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        reconcile_totals(campaign_totals(statuses(recipients(), events()), report()), report(), tolerance=-0.1)


def test_empty_events_without_dtypes_still_work():
    untyped = pd.DataFrame(columns=events().columns)  # every column object, as an untyped empty load gives
    result = statuses(recipients(("ann@example.com",)), untyped)
    assert result["latest_status"].tolist() == ["Sent"]


def test_naive_event_timestamps_are_refused_with_the_column_named():
    frame = events(("ann@example.com", "open", "2024-03-01 10:00"))
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    with pytest.raises(TypeError, match="timestamp"):
        member_statuses(recipients(("ann@example.com",)), frame)


def test_same_second_repeat_clicks_count_as_mailchimp_counts_them():
    url = "https://shop.example/a"
    click = events(("ann@example.com", "click", "2024-03-01 10:05", url))
    repeat = click.assign(occurrence=np.int64(1), event_id="f" * 40)
    both = pd.concat([click.assign(occurrence=np.int64(0)), repeat], ignore_index=True)
    # Fetched twice: the same two identities again, still two clicks.
    result = statuses(recipients(("ann@example.com",)), pd.concat([both, both], ignore_index=True))
    member = row_of(result, "ann@example.com")
    assert (member["total_clicks"], member["unique_clicks"], member["distinct_urls_clicked"]) == (2, 1, 1)
    assert member["last_clicked_url"] == url
    totals = totals_of(result)
    assert (totals["total_clicks"], totals["unique_subscriber_clicks"]) == (2, 1)


def test_bounce_of_unknown_type_is_bounced_but_neither_hard_nor_soft():
    result = statuses(
        recipients(("ann@example.com",), ("bob@example.com", "soft")),
        events(
            ("ann@example.com", "bounce", "2024-03-01 09:05", "unknown"),
            ("bob@example.com", "bounce", "2024-03-01 09:05", "unknown"),
        ),
    )
    MemberStatuses.validate(result)
    ann, bob = row_of(result, "ann@example.com"), row_of(result, "bob@example.com")
    assert (ann["latest_status"], ann["was_bounced"], ann["bounce_type"]) == ("Bounced", True, "unknown")
    assert bob["bounce_type"] == "soft"  # what sent-to says outranks a bounce without a type
    totals = totals_of(result)
    # Mailchimp's report has only hard and soft bounces; delivered is emails sent minus those.
    assert (totals["hard_bounces"], totals["soft_bounces"], totals["delivered"]) == (0, 1, 1)
