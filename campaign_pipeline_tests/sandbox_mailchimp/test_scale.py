"""A 1,000,000-recipient campaign is served page by page without materialising it."""

from __future__ import annotations

import tracemalloc

import numpy as np

from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

from .conftest import client_for

MILLION = 1_000_000


def test_million_recipient_campaign_pages_with_bounded_memory() -> None:
    account = SandboxAccount(seed=13, n_members=MILLION, n_regular_campaigns=1, n_automation_emails=0)
    campaign_id = account.campaign_ids()[0]
    tracemalloc.start()
    try:
        with MailchimpSandbox(account) as sandbox:
            client = client_for(sandbox)
            report = client.reports.get_campaign_report(campaign_id)
            pages = {}
            for offset in (0, 500_000, MILLION - 1_000):
                pages[offset] = client.reports.get_email_activity_for_campaign(campaign_id, count=1000, offset=offset)
            last_recipients = client.reports.get_campaign_recipients(campaign_id, count=1000, offset=MILLION - 1_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["emails_sent"] == MILLION
    assert 0.2 < report["opens"]["open_rate"] < 0.4
    # All recipients plus the deliberately malformed empty-address entry after them.
    assert pages[0]["total_items"] == MILLION + 1
    assert all(len(page["emails"]) == 1000 for page in pages.values())
    assert len(last_recipients["sent_to"]) == 1000 and last_recipients["total_items"] == MILLION
    # Pages are generated on their own: the same page from a fresh account is identical.
    again = SandboxAccount(seed=13, n_members=MILLION, n_regular_campaigns=1, n_automation_emails=0)
    spec = again.campaign_specs()[0]
    assert again.activity_entries(spec, np.arange(500_000, 501_000), None) == pages[500_000]["emails"]
    # A materialised million-member campaign would need hundreds of MB; chunked generation stays far below.
    assert peak < 100 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB"
