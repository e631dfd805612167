"""Sync profile validation (messages name field and allowed values) and the pure part of matching."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote_plus

import pandas as pd
import pytest
from simple_salesforce.format import format_soql

from campaign_pipeline.profile import ProfileError, load_profile
from campaign_pipeline.salesforce.matching import match_members
from campaign_pipeline.salesforce.soql import chunk_for_in_list

from .frames import email_id

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _load(tmp_path: Path, text: str):
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return load_profile(path)


def test_the_example_profile_loads_with_the_sandbox_fields() -> None:
    profile = load_profile(PROJECT_ROOT / "sync_profile.yaml")
    assert profile.mode == "campaign"
    assert profile.field_mapping.campaign_member["total_opens"] == "Total_Opens__c"
    assert profile.sync.bulk_threshold == 2000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mode: everything\n",
            r"mode: Input should be 'campaign', 'activity', .*'campaign_totals' \(got 'everything'\)",
        ),
        (
            "field_mapping:\n  campaign:\n    opens: Opens__c\n",
            r"field_mapping\.campaign: unknown metric 'opens'; allowed: emails_sent",
        ),
        (
            "field_mapping:\n  campaign_member:\n    total_opens: 'Total Opens'\n",
            r"'Total Opens' is not a Salesforce field API name",
        ),
        ("field_mapping:\n  campaign:\n    emails_sent: Name\n", r"Campaign\.Name is set by the sync itself"),
        (
            "field_mapping:\n  campaign:\n    emails_sent: X__c\n    delivered: X__c\n",
            r"Campaign field\(s\) X__c mapped from more than one metric",
        ),
        ("sync:\n  bulk_threshold: 0\n", r"sync\.bulk_threshold: Input should be greater than or equal to 1"),
        ("sync:\n  limit_usage_stop_fraction: 1.5\n", r"sync\.limit_usage_stop_fraction"),
        ("sync:\n  field_limit_policy: shorten\n", r"'truncate' or 'reject'"),
        ("matching:\n  create_lead: true\n", r"matching\.create_lead: unknown setting"),
        (
            "mode: campaign_totals\nfield_mapping:\n  campaign_member:\n    total_opens: Total_Opens__c\n",
            r"mode campaign_totals writes no CampaignMembers",
        ),
    ],
)
def test_invalid_profiles_are_refused_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ProfileError, match=expected):
        _load(tmp_path, text)


def test_defaults_need_no_custom_fields(tmp_path: Path) -> None:
    profile = _load(tmp_path, "mode: campaign\n")
    assert profile.field_mapping.campaign == {} and profile.field_mapping.campaign_member == {}
    assert profile.field_mapping.campaign_key_field is None


def test_in_lists_are_chunked_under_the_uri_limit_and_keep_every_value() -> None:
    emails = [f"someone.with.a.long.address.{n}@subdomain.example.com" for n in range(1500)] + ["o'brien@example.com"]
    template = "SELECT Id, Email, CreatedDate FROM Contact WHERE Email IN {}"
    chunks = list(chunk_for_in_list(emails, template, max_uri_chars=4000))
    assert len(chunks) > 1
    assert [email for chunk in chunks for email in chunk] == emails
    for chunk in chunks:
        assert len(quote_plus(format_soql(template, chunk))) <= 4000


def _people(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["salesforce_id", "salesforce_object", "email", "created_date"])


def _members(emails: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"campaign_id": "c1", "email_id": [email_id(e) for e in emails], "email_address": emails})


def test_contact_wins_over_lead_case_insensitively_and_oldest_contact_is_picked() -> None:
    people = _people(
        [
            ("00Q000000000001AAA", "Lead", "ann@x.com", "2020-01-01T00:00:00.000+0000"),
            ("003000000000002AAA", "Contact", "ANN@x.com", "2023-01-01T00:00:00.000+0000"),
            ("003000000000001AAA", "Contact", "Ann@X.com", "2022-01-01T00:00:00.000+0000"),
            ("00Q000000000009AAA", "Lead", "bob@x.com", "2021-01-01T00:00:00.000+0000"),
        ]
    )
    matches, unmatched = match_members(_members(["ann@x.com", "Bob@x.com", "carl@x.com"]), people)
    by_email = matches.set_index("email_address")
    assert by_email.loc["ann@x.com", "salesforce_id"] == "003000000000001AAA"
    assert by_email.loc["ann@x.com", "candidate_count"] == 3
    assert "picked Contact 003000000000001AAA of 3 candidates" in by_email.loc["ann@x.com", "match_note"]
    assert by_email.loc["Bob@x.com", "salesforce_object"] == "Lead" and by_email.loc["Bob@x.com", "match_note"] == ""
    assert unmatched["email_address"].tolist() == ["carl@x.com"]


def test_equal_created_dates_fall_back_to_the_id() -> None:
    same = "2022-01-01T00:00:00.000+0000"
    people = _people([("003B", "Contact", "a@x.com", same), ("003A", "Contact", "a@x.com", same)])
    matches, _ = match_members(_members(["a@x.com"]), people)
    assert matches.loc[0, "salesforce_id"] == "003A"


@pytest.mark.parametrize(
    ("value", "reason"), [("1999-12-31", "before Mailchimp's first campaigns"), ("2026-13-01", "date")]
)
def test_history_since_must_be_a_plausible_date(tmp_path, value, reason):
    path = tmp_path / "profile.yaml"
    path.write_text(f"mailchimp:\n  history_since: {value}\n")
    with pytest.raises(ProfileError, match=rf"mailchimp.history_since.*{reason}"):
        load_profile(path)
    path.write_text("mailchimp:\n  history_since: 2026-07-01\n")
    assert load_profile(path).mailchimp.history_since.isoformat() == "2026-07-01"
