"""Mode notes in Dagster with real sent-email sizes: every frame goes through the Postgres IO manager.

A 1 MB email is attached to every matched person; one over Salesforce's 25 MB Attachment limit is refused per
record with the reason while the Notes of the same campaign sync.
"""

from __future__ import annotations

import base64
import uuid

import dagster as dg
import pandas as pd
import pytest

from campaign_pipeline.core.activity_records import ATTACHMENT_MAX_BYTES
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.defs import salesforce_assets
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.resources import SandboxSalesforceResource
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager
from campaign_pipeline.stores import store_resources
from campaign_pipeline_tests.activity.frames import content, events, recipients, report, statuses
from campaign_pipeline_tests.metadata import materialization_metadata

pytestmark = pytest.mark.slow


def _html(size: int) -> str:
    """Email HTML of exactly `size` UTF-8 bytes, with the newlines, quotes and commas CSV must carry."""
    block = '<p class="x">Zoë, a line\nand "quotes"</p>\n'
    body = (block * (size // len(block.encode()) + 1)).encode()[: size - len("<html></html>")]
    html = "<html>" + body.decode("utf-8", errors="ignore") + "</html>"
    return html + " " * (size - len(html.encode()))


def _upstream(campaign_id: str, audience: list[str], html: str) -> list[dg.AssetsDefinition]:
    raw = events(*[(a, "open", f"2026-03-02 15:{n:02d}") for n, a in enumerate(audience)], campaign_id=campaign_id)
    mailchimp_report = report(campaign_id)
    for column in ("abuse_reports", "forwards_count", "forwards_opens"):
        mailchimp_report[column] = 0
    frames = {
        "raw_email_events": raw,
        "member_statuses": statuses(recipients(*audience, campaign_id=campaign_id), raw),
        "mailchimp_campaign_report": mailchimp_report,
        "campaign_content": content(html, campaign_id),
    }

    def stand_in(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=mailchimp_campaigns, metadata={"partition_expr": "campaign_id"})
        def _frame() -> pd.DataFrame:
            return frames[name]

        return _frame

    return [stand_in(name) for name in frames]


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return materialization_metadata(result, asset)


@pytest.mark.parametrize("html_bytes", [1024 * 1024, ATTACHMENT_MAX_BYTES + 1])
def test_sent_email_through_the_io_manager_in_notes_mode(html_bytes, dagster_instance, pg_engine) -> None:
    schema = f"large_email_{uuid.uuid4().hex[:8]}"
    resource = SandboxSalesforceResource(sandbox_schema=schema, backoff_seconds=0.0)
    campaign_id = uuid.uuid4().hex[:10]
    audience = SandboxAccount(seed=resource.sandbox_seed).audience_emails()[:12]
    html = _html(html_bytes)
    assert len(html.encode()) == html_bytes
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
    result = dg.materialize(
        [
            *_upstream(campaign_id, audience, html),
            *salesforce_assets(SyncProfile.model_validate({"mode": "notes", "activity": {"notes_format": "classic"}})),
        ],
        partition_key=campaign_id,
        instance=dagster_instance,
        resources={"io_manager": PostgresPandasIOManager(), "salesforce": resource, **store_resources()},
        raise_on_error=False,
    )
    assert result.success
    matched = len(result.output_for_node("salesforce_matches", "salesforce_matches"))
    assert matched > 0
    pushed = _metadata(result, "salesforce_sync")
    assert pushed["per_kind"]["note"]["created"] == matched
    with SalesforceSandbox(pg_engine, schema=schema) as org:
        attachments = [a for a in org.records("Attachment") if a["Name"] == f"mailchimp-{campaign_id}.html"]
        notes = org.records("Note")
    assert len(notes) == matched
    if html_bytes <= ATTACHMENT_MAX_BYTES:
        assert pushed["failed"] == 0, pushed.get("failures")
        assert pushed["per_kind"]["attachment"]["created"] == matched == len(attachments)
        assert base64.b64decode(attachments[0]["Body"]).decode("utf-8") == html
    else:
        assert pushed["per_kind"]["attachment"]["failed"] == matched
        assert attachments == []
        reasons = result.output_for_node("sf_attachments")["reject_reason"]
        assert len(reasons) == matched and reasons.str.contains(f"is {html_bytes} bytes").all()
