"""`campaign-pipeline demo`: discover the campaigns, sync each one end to end, and summarise what landed where."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from campaign_pipeline.core.campaign_types import canonical_campaign_type, is_automation_type
from campaign_pipeline.definitions import PROJECT_ROOT, SYNC_JOB_NAME, build_definitions, load_active_profile
from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS
from campaign_pipeline.mailchimp.sensors import build_mailchimp_sensor
from campaign_pipeline.storage.database import data_dir, get_engine
from campaign_pipeline.storage.frames import read_frame, table_exists

DEMO_LOOKBACK_DAYS = 365
QUIET_LOGGING = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SalesforceCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    api_calls: int = 0


@dataclass
class CampaignSummary:
    campaign_id: str
    title: str = ""
    sent_at_is_exact: bool = True
    campaign_type: str = "regular"
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    salesforce: SalesforceCounts = field(default_factory=SalesforceCounts)
    run_id: str = ""
    success: bool = False


def demo_instance() -> dg.DagsterInstance:
    """The project's own instance (dagster.yaml at the root), so demo runs show up in `dagster dev` too."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    os.chdir(PROJECT_ROOT)  # dagster.yaml's artifact folders are relative to the project root
    return dg.DagsterInstance.from_config(str(PROJECT_ROOT))


def discover_campaigns(defs: dg.Definitions, instance: dg.DagsterInstance, list_id: str | None = None) -> list[str]:
    """One tick of the new-sends sensor: add the partitions it finds, as the daemon would.

    The demo's first tick looks back further than the deployed sensor's default, so that every campaign
    of the sandbox account is found rather than just last week's.
    """
    sensor = build_mailchimp_sensor(SYNC_JOB_NAME, lookback_days=DEMO_LOOKBACK_DAYS, list_id=list_id)
    state_file = data_dir() / "demo_sensor_cursor.json"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    cursor = state_file.read_text() if state_file.exists() else None
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=dict(defs.resources or {})
    ) as context:
        result = sensor(context)
        if isinstance(result, dg.SensorResult):
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            if result.cursor:
                state_file.write_text(result.cursor)
        if context.cursor and not state_file.exists():
            state_file.write_text(context.cursor)
    return sorted(instance.get_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS))


def summarise(key: str, result: dg.ExecuteInProcessResult) -> CampaignSummary:
    """Counts from the stored frames (the same rows the UI previews) and the sync's own metadata."""
    summary = CampaignSummary(campaign_id=key, run_id=result.run_id, success=result.success)
    engine = get_engine()
    if table_exists(engine, "asset_mailchimp_campaign_report"):
        report = read_frame(engine, "asset_mailchimp_campaign_report", [key])
        if len(report):
            row = report.iloc[0]
            summary.title = str(row.get("campaign_title") or "")
            summary.campaign_type = canonical_campaign_type(row.get("campaign_type"))
            summary.sent_at_is_exact = not is_automation_type(summary.campaign_type)
    if table_exists(engine, "asset_campaign_totals"):
        totals = read_frame(engine, "asset_campaign_totals", [key])
        if len(totals):
            row = totals.iloc[0]
            summary.sent = int(row["emails_sent"])
            summary.delivered = int(row["delivered"])
            summary.opened = int(row["unique_opens"])
            summary.clicked = int(row["unique_subscriber_clicks"])
            summary.bounced = int(row["hard_bounces"]) + int(row["soft_bounces"])
            summary.unsubscribed = int(row["unsubscribes"])
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        if materialization.asset_key.to_user_string() == "salesforce_sync":
            meta: dict[str, Any] = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            for counter in ("created", "updated", "unchanged", "failed", "api_calls"):
                setattr(summary.salesforce, counter, int(meta.get(counter, 0) or 0))
    return summary


def run_demo(mode: str | None, progress) -> dict[str, Any]:
    profile = load_active_profile()
    if mode:
        profile = profile.model_copy(update={"mode": mode})
    defs = build_definitions(profile)
    instance = demo_instance()
    progress(f"mode {profile.mode}: looking for sent campaigns")
    keys = discover_campaigns(defs, instance, profile.mailchimp.list_id)
    job = defs.resolve_job_def(SYNC_JOB_NAME)
    summaries = []
    for index, key in enumerate(keys, start=1):
        progress(f"[{index}/{len(keys)}] campaign {key}: syncing")
        result = job.execute_in_process(
            partition_key=key, instance=instance, run_config=QUIET_LOGGING, raise_on_error=False
        )
        summary = summarise(key, result)
        summaries.append(summary)
        status = "ok" if result.success else "FAILED (see the run in `dagster dev`)"
        progress(f"[{index}/{len(keys)}] campaign {key}: {status}")
    return {
        "mode": profile.mode,
        "campaigns": [asdict(s) for s in summaries],
        "salesforce_writes": sum(s.salesforce.created + s.salesforce.updated for s in summaries),
        "failed_runs": sum(not s.success for s in summaries),
    }


def format_summary(report: dict[str, Any]) -> str:
    header = (
        f"{'campaign':<14} {'title':<28} {'type':<10} {'sent':>7} {'deliv':>7} {'opened':>7} {'clicked':>7} {'bounced':>7} "
        f"{'unsub':>6} | {'created':>7} {'updated':>7} {'unchanged':>9} {'failed':>6}"
    )
    lines = [f"Mode: {report['mode']}", header, "-" * len(header)]
    for c in report["campaigns"]:
        sf = c["salesforce"]
        title = (c["title"] or "")[:26] + ("*" if not c["sent_at_is_exact"] else "")
        lines.append(
            f"{c['campaign_id']:<14} {title:<28} {c['campaign_type'][:10]:<10} {c['sent']:>7} {c['delivered']:>7} {c['opened']:>7} "
            f"{c['clicked']:>7} {c['bounced']:>7} {c['unsubscribed']:>6} | {sf['created']:>7} {sf['updated']:>7} "
            f"{sf['unchanged']:>9} {sf['failed']:>6}{'' if c['success'] else '  RUN FAILED'}"
        )
    if any(not c["sent_at_is_exact"] for c in report["campaigns"]):
        lines.append(
            "* automation email: Mailchimp gives no per-recipient send time, so 'Sent' times are approximate "
            "(never after the member's first activity) and time to open is left empty"
        )
    lines.append(f"Salesforce records written this run: {report['salesforce_writes']}")
    return "\n".join(lines)


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
