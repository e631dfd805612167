"""Modes activity and notes materialized in Dagster: stand-in upstream assets, the Postgres IO manager, the sandbox org."""

from __future__ import annotations

import uuid

import dagster as dg
import pandas as pd
import pytest

from campaign_pipeline.core.metrics import campaign_totals
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.defs import salesforce_assets
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.resources import SandboxSalesforceResource
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager
from campaign_pipeline.stores import store_resources
from campaign_pipeline_tests.metadata import materialization_metadata

from .frames import content, events, recipients, report, statuses

PARTITION = {"partition_expr": "campaign_id"}
pytestmark = pytest.mark.slow


def _stand_ins(campaign_id: str, audience: list[str]) -> list[dg.AssetsDefinition]:
    raw = events(
        *[(address, "open", f"2026-03-02 15:{n:02d}") for n, address in enumerate(audience)],
        *[
            (address, "click", f"2026-03-03 10:{n:02d}", f"https://example.com/{n}")
            for n, address in enumerate(audience[:5])
        ],
        campaign_id=campaign_id,
    )
    members = statuses(recipients(*audience, campaign_id=campaign_id), raw)
    mailchimp_report = report(campaign_id)
    for column in ("abuse_reports", "forwards_count", "forwards_opens"):
        mailchimp_report[column] = 0
    frames = {
        "raw_email_events": raw,
        "member_statuses": members,
        "mailchimp_campaign_report": mailchimp_report,
        "campaign_totals": campaign_totals(members, mailchimp_report),
        "campaign_content": content("<html><p>Hello</p></html>", campaign_id),
    }

    def stand_in(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=mailchimp_campaigns, metadata=PARTITION)
        def _frame() -> pd.DataFrame:
            return frames[name]

        return _frame

    return [stand_in(name) for name in frames]


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return materialization_metadata(result, asset)


@pytest.mark.parametrize(
    ("mode", "kinds"),
    [
        ("activity", {"task"}),
        ("campaign_and_activity", {"campaign", "task"}),
        ("notes", {"content_note", "content_note_link", "email_file"}),
        ("notes_classic", {"note", "attachment"}),
    ],
)
def test_mode_materializes_through_the_push_and_a_rerun_writes_nothing(mode, kinds, dagster_instance, pg_url) -> None:
    resource = SandboxSalesforceResource(sandbox_schema=f"activity_assets_{uuid.uuid4().hex[:8]}", backoff_seconds=0.0)
    # A fresh campaign id keeps this test's rows apart in the shared ledger and frame tables.
    campaign_id = uuid.uuid4().hex[:10]
    audience = SandboxAccount(seed=resource.sandbox_seed).audience_emails()[:30]
    if mode == "notes_classic":
        profile = SyncProfile.model_validate({"mode": "notes", "activity": {"notes_format": "classic"}})
    else:
        profile = SyncProfile.model_validate({"mode": mode})
    assets = [
        *[
            a
            for a in _stand_ins(campaign_id, audience)
            if mode == "campaign_and_activity" or a.key.path[0] != "campaign_totals"
        ],
        *salesforce_assets(profile),
    ]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])

    def materialize() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            assets,
            partition_key=campaign_id,
            instance=dagster_instance,
            resources={"io_manager": PostgresPandasIOManager(), "salesforce": resource, **store_resources()},
        )

    first = materialize()
    assert first.success
    pushed = _metadata(first, "salesforce_sync")
    assert pushed["failed"] == 0, pushed.get("failures")
    assert kinds <= set(pushed["per_kind"]) and pushed["created"] > 0
    matched = len(first.output_for_node("salesforce_matches", "salesforce_matches"))
    if "task" in kinds:
        tasks = _metadata(first, "sf_tasks")["tasks"]
        assert pushed["per_kind"]["task"]["created"] == tasks > matched
    if "note" in kinds:
        assert pushed["per_kind"]["note"]["created"] == matched
        attachments = _metadata(first, "sf_attachments")
        assert attachments["attachment_bytes_to_write"] == matched * len("<html><p>Hello</p></html>")
    if "content_note" in kinds:
        assert pushed["per_kind"]["content_note"]["created"] == matched
        assert pushed["per_kind"]["content_note_link"]["created"] == matched
        assert pushed["per_kind"]["email_file"]["created"] == matched
        files = _metadata(first, "sf_attachments")
        assert files["file_bytes_to_write"] == matched * len("<html><p>Hello</p></html>")
        assert pushed["file_bytes"] == files["file_bytes_to_write"] + _metadata(first, "sf_notes")["file_bytes"]
    second = materialize()
    assert _metadata(second, "salesforce_sync")["write_calls"] == 0
    if "attachment" in kinds:
        assert _metadata(second, "sf_attachments")["attachment_bytes_to_write"] == 0
    if "email_file" in kinds:
        assert _metadata(second, "sf_attachments")["file_bytes_to_write"] == 0
        assert _metadata(second, "salesforce_sync")["file_bytes"] == 0
