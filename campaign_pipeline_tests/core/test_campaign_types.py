"""Every campaign type Mailchimp documents, in each of its spellings, reaches one canonical name; new types still land."""

from __future__ import annotations

import pandas as pd
import pytest

from campaign_pipeline.core.campaign_types import (
    campaign_type_label,
    canonical_campaign_type,
    is_automation_type,
    is_known_campaign_type,
)
from campaign_pipeline.core.events import parse_campaign_report
from campaign_pipeline.core.salesforce_records import desired_campaigns
from campaign_pipeline.core.schemas import MailchimpCampaignReport


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("regular", "regular"),
        ("plaintext", "plaintext"),
        ("plain-text", "plaintext"),
        ("absplit", "absplit"),
        ("ab_split", "absplit"),
        ("variate", "variate"),
        ("rss", "rss"),
        ("automation", "automation"),
        ("auto", "automation"),
        (" Plain-Text ", "plaintext"),
        (None, "regular"),
        ("", "regular"),
    ],
)
def test_each_documented_spelling_has_one_canonical_name(written, canonical):
    assert canonical_campaign_type(written) == canonical
    assert is_known_campaign_type(written)
    assert is_automation_type(written) == (canonical == "automation")


def test_an_unknown_type_is_kept_as_written_and_labelled_as_unknown():
    assert canonical_campaign_type("SMS") == "sms"
    assert not is_known_campaign_type("sms") and not is_automation_type("sms")
    assert "does not know" in campaign_type_label("sms")


def report_of(campaign_type: str) -> dict:
    return {"id": "abc123", "type": campaign_type, "send_time": "2026-01-05T10:00:00+00:00", "emails_sent": 10}


@pytest.mark.parametrize("written", ["plain-text", "ab_split", "variate", "rss", "auto", "carrier_pigeon"])
def test_every_report_type_passes_the_report_schema(written):
    frame = parse_campaign_report(report_of(written))
    MailchimpCampaignReport.validate(frame)
    assert frame.loc[0, "campaign_type"] == canonical_campaign_type(written)


def campaign_for(campaign_type: str) -> pd.Series:
    report = parse_campaign_report(report_of(campaign_type))
    totals = pd.DataFrame({"campaign_id": ["abc123"], "emails_sent": [10]})
    return desired_campaigns(totals, report, totals_mapping={}).iloc[0]


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("plain-text", "plain-text campaign"),
        ("ab_split", "A/B split campaign"),
        ("variate", "multivariate (A/B test) campaign"),
        ("rss", "RSS campaign send"),
        ("auto", "automation email"),
    ],
)
def test_the_type_travels_to_the_salesforce_campaign(written, words):
    campaign = campaign_for(written)
    assert campaign["Type"] == "Email"  # a value of Salesforce's standard picklist
    assert campaign["Description"].startswith(f"Mailchimp {words} abc123")
    # "auto" is an automation email whichever way Mailchimp spells it: approximate send time.
    assert bool(campaign["sent_at_is_exact"]) == (written != "auto")
    assert ("approximate" in campaign["Description"]) == (written == "auto")
