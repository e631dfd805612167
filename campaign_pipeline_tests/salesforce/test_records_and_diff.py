"""Pure tests of the desired Salesforce records (core.salesforce_records) and the ledger diff (core.diff)."""

from __future__ import annotations

import pandas as pd
import pytest

from campaign_pipeline.core import diff
from campaign_pipeline.core import salesforce_records as records

from .frames import campaign_report, campaign_totals, email_id, member_statuses


def _matches(statuses: pd.DataFrame, people: dict[str, tuple[str, str]]) -> pd.DataFrame:
    rows = [
        {
            "campaign_id": row.campaign_id,
            "email_id": row.email_id,
            "email_address": row.email_address,
            "salesforce_id": people[row.email_address][0],
            "salesforce_object": people[row.email_address][1],
        }
        for row in statuses.itertuples()
        if row.email_address in people
    ]
    return pd.DataFrame(rows)


def test_campaign_record_carries_name_totals_key_and_description() -> None:
    statuses = member_statuses("c1", {"a@x.com": "Clicked", "b@x.com": "Sent"})
    desired = records.desired_campaigns(
        campaign_totals(statuses),
        campaign_report("c1"),
        totals_mapping={"emails_sent": "NumberSent", "open_rate": "Open_Rate__c"},
        key_field="Mailchimp_Campaign_Id__c",
    )
    row = desired.iloc[0]
    assert row["sync_key"] == "c1"
    assert row["Name"] == "Spring offer"
    assert row["NumberSent"] == 2
    assert row["Open_Rate__c"] == pytest.approx(0.5)
    assert row["Mailchimp_Campaign_Id__c"] == "c1"
    assert row["StartDate"] == "2026-03-02"
    assert bool(row["sent_at_is_exact"]) is True
    assert "approximate" not in row["Description"]


def test_automation_campaign_says_its_send_time_is_approximate() -> None:
    statuses = member_statuses("auto1", {"a@x.com": "Opened"}, exact=False)
    desired = records.desired_campaigns(
        campaign_totals(statuses), campaign_report("auto1", campaign_type="automation"), totals_mapping={}
    )
    assert bool(desired.loc[0, "sent_at_is_exact"]) is False
    assert records.APPROXIMATE_SEND_NOTE in desired.loc[0, "Description"]


def test_campaign_name_falls_back_to_subject_and_is_truncated_with_marker() -> None:
    statuses = member_statuses("c1", {"a@x.com": "Sent"})
    long_subject = "S" * 120
    desired = records.desired_campaigns(
        campaign_totals(statuses), campaign_report("c1", title=None, subject=long_subject), totals_mapping={}
    )
    name = desired.loc[0, "Name"]
    assert len(name) == 80
    assert name.endswith(records.TRUNCATION_MARKER)
    assert name.startswith("SSSS")
    assert desired.loc[0, "truncated_fields"] == "Name"


def test_reject_policy_rejects_the_row_naming_field_and_length() -> None:
    statuses = member_statuses("c1", {"a@x.com": "Sent"})
    desired = records.desired_campaigns(
        campaign_totals(statuses),
        campaign_report("c1", title="T" * 93),
        totals_mapping={},
        field_limit_policy="reject",
    )
    assert desired.loc[0, "reject_reason"] == "Campaign.Name is 93 characters; Salesforce allows 80"
    assert desired.loc[0, "Name"] == "T" * 93


def test_member_statuses_are_created_per_campaign_with_responded_flags() -> None:
    desired = records.desired_campaign_member_statuses(["c1", "c2", "c1"])
    assert len(desired) == 10
    c1 = desired[desired["campaign_id"] == "c1"].set_index("Label")
    assert set(c1.index) == {"Sent", "Opened", "Clicked", "Bounced", "Unsubscribed"}
    assert c1["HasResponded"].to_dict() == {
        "Sent": False,
        "Opened": True,
        "Clicked": True,
        "Bounced": False,
        "Unsubscribed": False,
    }
    assert (c1["parent_key"] == "c1").all()
    assert desired["sync_key"].is_unique


def test_campaign_members_only_for_matched_people_with_status_and_mapped_metrics() -> None:
    statuses = member_statuses(
        "c1", {"a@x.com": "Clicked", "b@x.com": "Opened", "nobody@x.com": "Sent"}, opens={"a@x.com": 4}
    )
    matches = _matches(statuses, {"a@x.com": ("003A", "Contact"), "b@x.com": ("00QB", "Lead")})
    desired = records.desired_campaign_members(
        statuses,
        matches,
        member_mapping={"total_opens": "Total_Opens__c", "last_clicked_url": "Last_Clicked_URL__c"},
        key_field="Mailchimp_Key__c",
    ).set_index("sync_key")
    assert set(desired.index) == {"c1|003A", "c1|00QB"}
    contact = desired.loc["c1|003A"]
    assert contact["ContactId"] == "003A" and pd.isna(contact["LeadId"])
    assert contact["Status"] == "Clicked"
    assert contact["Total_Opens__c"] == 4
    assert contact["Last_Clicked_URL__c"] == "https://example.com/offer"
    assert contact["Mailchimp_Key__c"] == "c1|003A"
    assert contact["parent_key"] == "c1"
    lead = desired.loc["c1|00QB"]
    assert lead["LeadId"] == "00QB" and pd.isna(lead["ContactId"])
    assert pd.isna(lead["Last_Clicked_URL__c"])


def test_two_members_resolving_to_one_person_keep_the_most_recent_status() -> None:
    statuses = member_statuses("c1", {"first@x.com": "Opened", "second@x.com": "Clicked"})
    matches = _matches(statuses, {"first@x.com": ("003A", "Contact"), "second@x.com": ("003A", "Contact")})
    desired = records.desired_campaign_members(statuses, matches, member_mapping={})
    assert len(desired) == 1
    assert desired.loc[0, "Status"] == "Clicked"  # second@ has the later event


def test_member_url_longer_than_the_org_field_is_truncated() -> None:
    statuses = member_statuses("c1", {"a@x.com": "Clicked"})
    statuses["last_clicked_url"] = "https://example.com/" + "p" * 300
    matches = _matches(statuses, {"a@x.com": ("003A", "Contact")})
    desired = records.desired_campaign_members(
        statuses,
        matches,
        member_mapping={"last_clicked_url": "Last_Clicked_URL__c"},
        extra_limits={"Last_Clicked_URL__c": 255},
    )
    assert len(desired.loc[0, "Last_Clicked_URL__c"]) == 255
    assert desired.loc[0, "truncated_fields"] == "Last_Clicked_URL__c"


def _ledger(rows: list[tuple[str, str | None, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(diff.LEDGER_COLUMNS))


def _members_frame() -> pd.DataFrame:
    statuses = member_statuses("c1", {"a@x.com": "Clicked", "b@x.com": "Opened", "c@x.com": "Sent", "d@x.com": "Sent"})
    matches = _matches(
        statuses, {a: (f"003{a[0].upper()}", "Contact") for a in ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]}
    )
    return records.desired_campaign_members(statuses, matches, member_mapping={"total_opens": "Total_Opens__c"})


def test_diff_sorts_records_into_create_update_unchanged_and_retry() -> None:
    desired = _members_frame()
    hashes = dict(zip(desired["sync_key"], diff.content_hashes(desired), strict=True))
    ledger = _ledger(
        [
            ("c1|003A", "00vA", hashes["c1|003A"], diff.RESULT_OK),  # unchanged
            ("c1|003B", "00vB", "stale", diff.RESULT_OK),  # changed -> update
            ("c1|003C", "00vC", hashes["c1|003C"], diff.RESULT_ERROR),  # failed update -> retry
            ("c1|gone", "00vX", "x", diff.RESULT_OK),  # not desired any more: ignored
        ]
    )
    result = diff.diff_against_ledger(desired, ledger).set_index("sync_key")
    assert result["action"].to_dict() == {
        "c1|003A": "unchanged",
        "c1|003B": "update",
        "c1|003C": "update",
        "c1|003D": "create",
    }
    assert result["is_retry"].to_dict() == {"c1|003A": False, "c1|003B": False, "c1|003C": True, "c1|003D": False}
    assert result.loc["c1|003B", "salesforce_id"] == "00vB"
    assert diff.summarise_actions(result.reset_index()) == {
        "create": 1,
        "update": 2,
        "unchanged": 1,
        "rejected": 0,
        "retries": 1,
    }


def test_failed_and_pending_creates_are_sent_again_pending_ones_looked_up_first() -> None:
    desired = _members_frame()
    ledger = _ledger(
        [
            ("c1|003A", None, "h", diff.RESULT_ERROR),
            ("c1|003B", None, "h", diff.RESULT_PENDING),
        ]
    )
    result = diff.diff_against_ledger(desired, ledger).set_index("sync_key")
    assert result.loc["c1|003A", "action"] == "create" and bool(result.loc["c1|003A", "is_retry"])
    assert not bool(result.loc["c1|003A", "needs_lookup"])
    assert result.loc["c1|003B", "action"] == "create" and bool(result.loc["c1|003B", "needs_lookup"])


def test_content_hash_changes_with_a_value_or_a_mapping_and_survives_dtype_round_trips() -> None:
    desired = _members_frame()
    base = diff.content_hashes(desired)
    changed = desired.copy()
    changed.loc[0, "Total_Opens__c"] = 99
    assert (diff.content_hashes(changed) != base).tolist() == [True, False, False, False]
    remapped = desired.rename(columns={"Total_Opens__c": "Other_Opens__c"})
    assert (diff.content_hashes(remapped) != base).all()
    # As a frame might come back from Postgres: nullable dtypes, floats for counts.
    round_trip = desired.copy()
    round_trip["Total_Opens__c"] = round_trip["Total_Opens__c"].astype(float)
    round_trip["Status"] = round_trip["Status"].astype("string")
    assert (diff.content_hashes(round_trip) == base).all()


def test_rejected_records_are_never_sent() -> None:
    desired = _members_frame()
    desired.loc[1, "reject_reason"] = "too long"
    result = diff.diff_against_ledger(desired, _ledger([]))
    assert result.loc[1, "action"] == "rejected"
    assert (result.drop(index=1)["action"] == "create").all()


def test_duplicate_sync_keys_are_refused() -> None:
    desired = _members_frame()
    doubled = pd.concat([desired, desired.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="c1\\|003A"):
        diff.diff_against_ledger(doubled, _ledger([]))


def test_email_id_helper_matches_mailchimp_hash() -> None:
    assert email_id(" A@X.com ") == email_id("a@x.com")


def test_content_hashes_are_pinned_so_a_new_formatting_cannot_resend_every_record():
    """The ledger keeps these digests: an instant hashes as its fixed-width UTC text whatever formats it (strftime
    before, numpy now), a null as itself; a change here would make the next run update every record once."""
    frame = pd.DataFrame(
        {
            "sync_key": ["a", "b", "c"],
            "StartDate": pd.to_datetime(
                ["2026-01-05T10:00:00.5Z", None, "1999-12-31T23:59:59.000001Z"], utc=True, format="ISO8601"
            ),
            "Name": ["x", "y", None],
            "parent_key": [None, "p", "p"],
        }
    )
    assert diff.content_hashes(frame).tolist() == ["5239431c8d21361c", "68216927a1250ac0", "8cb9e7f12cfd3cce"]
    berlin = frame.assign(StartDate=frame["StartDate"].dt.tz_convert("Europe/Berlin"))
    assert diff.content_hashes(berlin).tolist() == diff.content_hashes(frame).tolist()


def test_content_hashes_are_pinned_so_an_upgrade_never_rewrites_the_ledger() -> None:
    # Digests written by earlier releases sit in every user's ledger: a new hash for the same values would send the
    # whole campaign again as updates. These were computed before the vectorised canonical text and row format.
    desired = pd.DataFrame(
        {
            "sync_key": ["c1|003A", "c1|003B", "c1|00QC"],
            "campaign_id": ["c1", "c1", "c1"],
            "parent_key": ["c1", None, "c1"],
            "reject_reason": [pd.NA, pd.NA, pd.NA],
            "truncated_fields": ["", "", ""],
            "sent_at_is_exact": [True, False, True],
            "ContactId": ["003A", "003B", pd.NA],
            "LeadId": [pd.NA, pd.NA, "00QC"],
            "Status": ["Clicked", "Opened", "Sent"],
            "Total_Opens__c": pd.Series([3, 0, pd.NA], dtype=object),
            "Minutes__c": pd.Series([12.5, 7.0, float("nan")], dtype=object),
            "Opted__c": pd.Series([True, False, None], dtype=object),
            "First_Open__c": pd.to_datetime(
                ["2026-01-05T10:00:00Z", None, "2026-01-05T11:30:00.250Z"], utc=True, format="ISO8601"
            ),
        }
    )
    assert diff.content_hashes(desired).tolist() == ["91fc0aefc295844a", "46902c8a676b78e9", "fbfd2815307e8220"]
