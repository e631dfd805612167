"""Pure parsing of Mailchimp report pages into the frames of docs/frames.md (no network)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from campaign_pipeline.core.events import (
    ReportError,
    dedupe_events,
    email_hash,
    event_ids,
    is_valid_campaign_id,
    iso_utc_strings,
    merged_pages,
    parse_campaign_report,
    parse_email_activity,
    parse_sent_to,
    parse_timestamp,
    parse_unsubscribes,
)
from campaign_pipeline.core.schemas import CampaignRecipients, MailchimpCampaignReport, RawEmailEvents


def member(address: str, *activity: dict) -> dict:
    return {"email_address": address, "email_id": email_hash(address), "activity": list(activity)}


def test_email_hash_is_mailchimps_subscriber_hash():
    assert email_hash(" Anna.Smith@Example.COM ") == hashlib.md5(b"anna.smith@example.com").hexdigest()
    assert email_hash("Zoë@example.com") == hashlib.md5("zoë@example.com".encode()).hexdigest()


def test_event_id_is_sha1_of_the_documented_identity():
    parsed = parse_email_activity(
        "c1", [member("A@x.com", {"action": "click", "timestamp": "2026-01-05T10:00:00+00:00", "url": "https://u"})]
    )
    expected = hashlib.sha1(
        f"c1|{email_hash('a@x.com')}|click|2026-01-05T10:00:00.000000Z|https://u".encode()
    ).hexdigest()
    assert parsed.frame["event_id"].tolist() == [expected]


def test_same_instant_written_with_other_offset_or_case_is_one_event():
    parsed = parse_email_activity(
        "c1",
        [
            member("Anna@X.com", {"action": "open", "timestamp": "2026-01-05T12:00:00+02:00"}),
            member("anna@x.com", {"action": "open", "timestamp": "2026-01-05T10:00:00+00:00"}),
            member("anna@x.com", {"action": "open", "timestamp": "2026-01-05T10:00:01+00:00"}),
        ],
    )
    assert len(parsed.frame) == 2
    assert parsed.frame["timestamp"].tolist() == [
        pd.Timestamp("2026-01-05T10:00:00Z"),
        pd.Timestamp("2026-01-05T10:00:01Z"),
    ]
    assert parsed.frame["email_id"].nunique() == 1


def test_activity_columns_follow_the_frame_contract():
    parsed = parse_email_activity(
        "c1",
        [
            member(
                "b@x.com",
                {"action": "open", "timestamp": "2026-01-05T10:00:00+00:00", "url": "ignored-on-open"},
                {"action": "click", "timestamp": "2026-01-05T10:01:00+00:00", "url": "https://shop"},
                {"action": "bounce", "timestamp": "2026-01-05T10:02:00+00:00", "type": "soft"},
            ),
            member("quiet@x.com"),
        ],
    )
    events = parsed.frame
    RawEmailEvents.validate(events)
    assert events["action"].tolist() == ["open", "click", "bounce"]
    assert events["url"].isna().tolist() == [True, False, True]
    assert events["bounce_type"].tolist()[2] == "soft"
    assert events["bounce_type"].isna().tolist()[:2] == [True, True]
    assert str(events["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert parsed.quarantined.empty


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (member("c@x.com", {"timestamp": "2026-01-05T10:00:00+00:00"}), "missing action"),
        (member("c@x.com", {"action": "open", "timestamp": "2026-02-30T25:61:00+00:00"}), "unparseable timestamp"),
        (member("c@x.com", {"action": "open"}), "unparseable timestamp"),
        (member("c@x.com", {"action": "click", "timestamp": "2026-01-05T10:00:00+00:00"}), "click without url"),
        (
            member("c@x.com", {"action": "click", "timestamp": "2026-01-05T10:00:00+00:00", "url": ""}),
            "click without url",
        ),
        (
            member("c@x.com", {"action": "bounce", "timestamp": "2026-01-05T10:00:00+00:00", "type": "medium"}),
            "bounce with type 'medium'",
        ),
        (member("c@x.com", {"action": "open", "timestamp": "2026-01-05T10:00:00"}), "has no UTC offset"),
        (member("c@x.com", {"action": "open", "timestamp": "2026-01-05"}), "has no UTC offset"),
        (member("c@x.com", {"action": "forward", "timestamp": "2026-01-05T10:00:00+00:00"}), "unknown action"),
        ({"email_address": "", "email_id": "", "activity": []}, "missing email_address"),
        ({"email_address": "not-an-address", "activity": []}, "is not an email address"),
        ({"email_address": "d@x.com", "activity": "open"}, "activity is not a list"),
        ("garbage", "not an object"),
    ],
)
def test_malformed_records_are_split_off_with_their_reason(record, reason):
    good = member("ok@x.com", {"action": "open", "timestamp": "2026-01-05T09:00:00+00:00"})
    parsed = parse_email_activity("c1", [good, record])
    assert parsed.frame["email_address"].tolist() == ["ok@x.com"]
    assert len(parsed.quarantined) == 1
    quarantined = parsed.quarantined.iloc[0]
    assert reason in quarantined["reason"]
    assert quarantined["source"] == "email-activity" and quarantined["campaign_id"] == "c1"
    json.loads(quarantined["record"])


def test_a_bad_activity_does_not_drop_the_members_good_activity():
    parsed = parse_email_activity(
        "c1",
        [
            member(
                "e@x.com",
                {"action": "open", "timestamp": "2026-01-05T10:00:00+00:00"},
                {"timestamp": "2026-01-05T11:00:00+00:00"},
            )
        ],
    )
    assert parsed.frame["action"].tolist() == ["open"]
    assert json.loads(parsed.quarantined.iloc[0]["record"])["email_address"] == "e@x.com"


def test_unsubscribes_become_unsubscribe_events():
    parsed = parse_unsubscribes(
        "c1",
        [
            {"email_address": "F@x.com", "timestamp": "2026-01-06T08:00:00+00:00", "reason": "N/A"},
            {"email_address": "", "timestamp": "2026-01-06T08:00:00+00:00"},
        ],
    )
    RawEmailEvents.validate(parsed.frame)
    assert parsed.frame["action"].tolist() == ["unsubscribe"]
    assert parsed.frame["email_address"].tolist() == ["F@x.com"]
    assert parsed.quarantined["source"].tolist() == ["unsubscribed"]


def test_sent_to_gives_recipients_with_send_time_and_exactness():
    sent_at = parse_timestamp("2026-01-05T10:00:00+00:00")
    parsed = parse_sent_to(
        "a1",
        [
            {"email_address": "G@x.com", "status": "sent"},
            {"email_address": "h@x.com", "status": "hard"},
            {"email_address": "g@x.com", "status": "sent"},
            {"email_address": "i@x.com", "status": "deferred"},
        ],
        sent_at=sent_at,
        sent_at_is_exact=False,
    )
    CampaignRecipients.validate(parsed.frame)
    assert parsed.frame["email_address"].tolist() == ["G@x.com", "h@x.com"]
    assert parsed.frame["send_status"].tolist() == ["sent", "hard"]
    assert (parsed.frame["sent_at"] == sent_at).all()
    assert not parsed.frame["sent_at_is_exact"].any()
    assert "deferred" in parsed.quarantined.iloc[0]["reason"]


def test_dedupe_keeps_one_row_per_event_id_in_time_order():
    parsed = parse_email_activity(
        "c1",
        [
            member("j@x.com", {"action": "open", "timestamp": "2026-01-05T11:00:00+00:00"}),
            member("k@x.com", {"action": "open", "timestamp": "2026-01-05T10:00:00+00:00"}),
        ],
    )
    doubled = pd.concat([parsed.frame, parsed.frame.iloc[::-1]], ignore_index=True)
    deduped = dedupe_events(doubled)
    assert len(deduped) == 2
    assert deduped["timestamp"].is_monotonic_increasing
    assert event_ids(deduped).tolist() == deduped["event_id"].tolist()


def test_campaign_report_flattens_to_the_schema():
    report = {
        "id": "abc123",
        "campaign_title": "Spring",
        "subject_line": "Hello",
        "type": "regular",
        "send_time": "2026-01-05T10:00:00+00:00",
        "emails_sent": 100,
        "abuse_reports": 1,
        "unsubscribed": 2,
        "bounces": {"hard_bounces": 3, "soft_bounces": 4},
        "forwards": {"forwards_count": 5, "forwards_opens": 6},
        "opens": {"opens_total": 50, "unique_opens": 30, "open_rate": 0.3226},
        "clicks": {"clicks_total": 9, "unique_clicks": 8, "unique_subscriber_clicks": 7, "click_rate": 0.0753},
    }
    frame = parse_campaign_report(report)
    MailchimpCampaignReport.validate(frame)
    row = frame.iloc[0]
    assert (row["hard_bounces"], row["soft_bounces"], row["forwards_opens"], row["unique_subscriber_clicks"]) == (
        3,
        4,
        6,
        7,
    )
    assert row["send_time"] == pd.Timestamp("2026-01-05T10:00:00Z")
    assert row["open_rate"] == pytest.approx(0.3226)


def test_campaign_report_with_a_broken_counter_names_campaign_and_field():
    with pytest.raises(ReportError, match=r"campaign abc123: report field opens.unique_opens is 'many'"):
        parse_campaign_report({"id": "abc123", "opens": {"unique_opens": "many"}})


@pytest.mark.parametrize(
    ("campaign_id", "valid"),
    [
        ("a1b2c3d4e5", True),
        ("42", True),
        ("", False),
        ("../x", False),
        ("a b", False),
        (None, False),
        ("x" * 65, False),
    ],
)
def test_campaign_ids_are_checked_for_partition_safety(campaign_id, valid):
    assert is_valid_campaign_id(campaign_id) is valid


def test_a_bounce_without_type_is_a_bounce_of_unknown_type():
    parsed = parse_email_activity(
        "c1",
        [
            member("u@x.com", {"action": "bounce", "timestamp": "2026-01-05T10:00:00+00:00"}),
            member("v@x.com", {"action": "bounce", "timestamp": "2026-01-05T10:00:00+00:00", "type": ""}),
            member("w@x.com", {"action": "bounce", "timestamp": "2026-01-05T10:00:00+00:00", "type": "hard"}),
        ],
    )
    RawEmailEvents.validate(parsed.frame)
    assert parsed.quarantined.empty
    assert parsed.frame.set_index("email_address")["bounce_type"].to_dict() == {
        "u@x.com": "unknown",
        "v@x.com": "unknown",
        "w@x.com": "hard",
    }


@pytest.mark.parametrize("written", ["2026-01-05T10:00:00Z", "2026-01-05T12:00:00+02:00", "2026-01-05T12:00:00+0200"])
def test_timestamps_with_any_offset_form_are_kept(written):
    parsed = parse_email_activity("c1", [member("t@x.com", {"action": "open", "timestamp": written})])
    assert parsed.quarantined.empty
    assert parsed.frame["timestamp"].tolist() == [pd.Timestamp("2026-01-05T10:00:00Z")]


def test_same_second_repeats_are_counted_occurrences_and_refetches_still_dedupe():
    click = {"action": "click", "timestamp": "2026-01-05T10:00:00+00:00", "url": "https://shop"}
    record = member("r@x.com", click, dict(click), dict(click), {**click, "url": "https://other"})
    once = parse_email_activity("c1", [record])
    RawEmailEvents.validate(once.frame)
    by_url = once.frame.groupby("url")["occurrence"].apply(sorted).to_dict()
    assert by_url == {"https://other": [0], "https://shop": [0, 1, 2]}
    assert once.frame["event_id"].is_unique and len(once.frame) == 4
    # The first occurrence keeps the plain identity (ids landed before repeats were counted stay valid).
    plain = hashlib.sha1(
        f"c1|{email_hash('r@x.com')}|click|2026-01-05T10:00:00.000000Z|https://shop".encode()
    ).hexdigest()
    assert plain in set(once.frame["event_id"])
    # A re-fetch, or the member record listed twice by paging, gives the same identities.
    again = parse_email_activity("c1", [record, record])
    assert sorted(again.frame["event_id"]) == sorted(once.frame["event_id"])


def test_pages_parsed_apart_merge_as_one_parse():
    """A member record a paging artefact put on two pages counts once, as in a parse of the whole listing; each
    page's refused records are kept."""
    anna = member("anna@x.com", {"action": "open", "timestamp": "2026-01-05T10:00:00+00:00"})
    bob = member(
        "bob@x.com",
        {"action": "open", "timestamp": "2026-01-05T09:00:00+00:00"},
        {"action": "open", "timestamp": "2026-01-05T09:00:00+00:00"},
    )
    broken = {"email_address": "", "activity": []}
    pages = [[anna, bob], [bob, broken, member("cy@x.com", {"action": "click", "timestamp": "2026-01-05T08:00:00Z"})]]
    whole = parse_email_activity("c1", [record for page in pages for record in page])
    merged = merged_pages([parse_email_activity("c1", page) for page in pages], "events")
    pd.testing.assert_frame_equal(merged.frame, whole.frame)
    assert merged.frame["occurrence"].tolist() == [0, 1, 0]  # bob's repeat kept, cy's click refused (no url)
    assert merged.frame["url"].map(lambda value: value is pd.NA).all()
    assert sorted(merged.quarantined["reason"]) == sorted(whole.quarantined["reason"])

    sent = [{"email_address": "anna@x.com", "status": "sent"}, {"email_address": "bob@x.com", "status": "sent"}]
    recipients = merged_pages(
        [parse_sent_to("c1", sent, None, True), parse_sent_to("c1", sent[1:], None, True)], "recipients"
    )
    assert recipients.frame["email_address"].tolist() == ["anna@x.com", "bob@x.com"]
    assert merged_pages([], "recipients").frame.empty and merged_pages([], "events").frame.empty


def test_iso_utc_strings_is_strftimes_fixed_width_utc_form():
    instants = pd.Series(
        pd.to_datetime(
            ["2026-01-05T10:00:00.123456789+02:00", None, "1969-07-20T20:17:40Z", "2026-03-29T01:30:00Z"],
            utc=True,
            format="ISO8601",
        )
    ).dt.tz_convert("America/New_York")
    expected = instants.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso_utc_strings(instants).tolist() == [expected[0], None, expected[2], expected[3]]
    assert iso_utc_strings(instants)[0] == "2026-01-05T08:00:00.123456Z"
