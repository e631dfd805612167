"""`campaign-pipeline demo`: discover the campaigns, sync each one end to end, and summarise what landed where."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
from dagster._core.execution.job_execution_result import JobExecutionResult
from dagster._core.utils import make_new_run_id

from campaign_pipeline.asset_metadata import table_rows
from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.core.campaign_types import canonical_campaign_type, is_automation_type
from campaign_pipeline.definitions import PROJECT_ROOT, SYNC_JOB_NAME, build_definitions, load_active_profile
from campaign_pipeline.deployment import choose_deployment
from campaign_pipeline.mailchimp.ownership import PartitionOwners
from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS
from campaign_pipeline.mailchimp.sensors import NewSendsCursor, build_mailchimp_sensor
from campaign_pipeline.preflight import stop_on_setup_error
from campaign_pipeline.run_health import (
    database_outage_message,
    fail_dead_runs,
    free_slots_of_finished_runs,
    is_database_outage,
    remember_failure,
    worker_tags,
)
from campaign_pipeline.run_in_process import execute_partition
from campaign_pipeline.salesforce.sync_metadata import PREVIEW_TAG
from campaign_pipeline.sandbox.resources import MAILCHIMP_SANDBOX_IDENTITY
from campaign_pipeline.storage.database import data_dir, get_engine
from campaign_pipeline.storage.frames import read_frame, table_exists

logger = logging.getLogger(__name__)

DEMO_LOOKBACK_DAYS = 365
QUIET_LOGGING = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SalesforceCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    api_calls: int = 0
    # Opt-out sync: people this run marked HasOptedOutOfEmail = true (0 when the profile leaves it off).
    opted_out: int = 0


@dataclass
class PreviewCounts:
    """A dry run's counts: what the next real run would write (would_skip: unchanged, left alone)."""

    would_create: int = 0
    would_update: int = 0
    would_skip: int = 0
    would_fail: int = 0
    api_calls: int = 0


COUNTERS = ("created", "updated", "unchanged", "failed")
PREVIEW_COUNTERS = ("would_create", "would_update", "would_skip", "would_fail")


@dataclass
class CampaignSummary:
    campaign_id: str
    # The campaign's Dagster partition: `<send date>_<title>_<campaign id>`.
    partition_key: str = ""
    title: str = ""
    sent_at_is_exact: bool = True
    campaign_type: str = "regular"
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    salesforce: SalesforceCounts | PreviewCounts = field(default_factory=SalesforceCounts)
    # Per record kind (campaign, campaign_member_status, campaign_member, task...): the same counts.
    per_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    run_id: str = ""
    success: bool = False


def demo_instance() -> dg.DagsterInstance:
    """The project's own instance (dagster.yaml at the root), so demo runs show up in `dagster dev` too."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    os.chdir(PROJECT_ROOT)  # dagster.yaml's artifact folders are relative to the project root
    return dg.DagsterInstance.from_config(str(PROJECT_ROOT))


def discover_campaigns(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    list_id: str | None = None,
    *,
    source: str | None = None,
    progress=None,
) -> list[str]:
    """One tick of the new-sends sensor: add the partitions it finds, as the daemon would; the keys to sync.

    The demo's first tick looks back further than the deployed sensor's default, so that every campaign
    of the sandbox account is found rather than just last week's. With ``source`` (the configured Mailchimp
    account), a cursor of another account is not reused and partitions another account owns are not synced;
    ``progress`` is told both.
    """
    say = progress or (lambda message: None)
    sensor = build_mailchimp_sensor(SYNC_JOB_NAME, lookback_days=DEMO_LOOKBACK_DAYS, list_id=list_id)
    state_file = data_dir() / "demo_sensor_cursor.json"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    cursor = state_file.read_text() if state_file.exists() else None
    held_by = NewSendsCursor.parse(cursor).source
    if source and held_by and held_by != source:
        say(f"the sensor cursor of {held_by} is not reused for {source}: listing its sends afresh")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=dict(defs.resources or {})
    ) as context:
        result = sensor(context)
        if isinstance(result, dg.SensorResult):
            # In order, as the daemon applies them: a key replacing a bare campaign id is added before the old goes.
            for request in result.dynamic_partitions_requests or []:
                held = set(instance.get_dynamic_partitions(request.partitions_def_name))
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    new = [key for key in request.partition_keys if key not in held]
                    instance.add_dynamic_partitions(request.partitions_def_name, new)
                elif isinstance(request, dg.DeleteDynamicPartitionsRequest):
                    for key in request.partition_keys:
                        if key in held:
                            instance.delete_dynamic_partition(request.partitions_def_name, key)
            if result.cursor:
                state_file.write_text(result.cursor)
        if context.cursor and not state_file.exists():
            state_file.write_text(context.cursor)
    # Dated keys sort by send date (bare ids of before the dates, if any are left, come after them).
    keys = sorted(instance.get_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS))
    if source is None:
        return keys
    campaign_of = {key: campaign_id_from_key(key) for key in keys}
    owners = PartitionOwners(get_engine()).owners(list(campaign_of.values()))
    foreign = Counter(owner for owner in owners.values() if owner != source)
    for owner, count in sorted(foreign.items()):
        say(
            f"{count} campaign partition(s) of {owner} are kept and not synced from {source}"
            + (" (`campaign-pipeline sandbox reset` deletes them)" if owner == MAILCHIMP_SANDBOX_IDENTITY else "")
        )
    return [key for key in keys if owners.get(campaign_of[key], source) == source]


def summarise(key: str, result: JobExecutionResult, preview: bool = False) -> CampaignSummary:
    """Counts from the stored frames (the same rows the UI previews) and the sync's own metadata."""
    campaign_id = campaign_id_from_key(key)
    summary = CampaignSummary(
        campaign_id=campaign_id,
        partition_key=key,
        run_id=result.run_id,
        success=result.success,
        salesforce=PreviewCounts() if preview else SalesforceCounts(),
    )
    engine = get_engine()
    if table_exists(engine, "asset_mailchimp_campaign_report"):
        report = read_frame(engine, "asset_mailchimp_campaign_report", [campaign_id])
        if len(report):
            row = report.iloc[0]
            summary.title = str(row.get("campaign_title") or "")
            summary.campaign_type = canonical_campaign_type(row.get("campaign_type"))
            summary.sent_at_is_exact = not is_automation_type(summary.campaign_type)
    if table_exists(engine, "asset_campaign_totals"):
        totals = read_frame(engine, "asset_campaign_totals", [campaign_id])
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
            counters = (*PREVIEW_COUNTERS, "api_calls") if preview else (*COUNTERS, "api_calls", "opted_out")
            for counter in counters:
                setattr(summary.salesforce, counter, int(meta.get(counter, 0) or 0))
            if "per_kind" in materialization.metadata:
                wanted = ("desired", *(PREVIEW_COUNTERS if preview else COUNTERS))
                summary.per_kind = {
                    str(row["kind"]): {name: int(row[name] or 0) for name in wanted}
                    for row in table_rows(materialization.metadata["per_kind"])
                }
    return summary


class DemoInterrupted(Exception):
    """SIGTERM or SIGINT arrived while a campaign was syncing; the run was marked failed and its slots freed."""

    def __init__(self, signum: int, run_id: str | None) -> None:
        self.signum = signum
        self.run_id = run_id
        name = signal.Signals(signum).name
        where = f" run {run_id} marked failed (re-running the demo finishes it)" if run_id else ""
        super().__init__(f"stopped by {name}:{where}")


class DatabaseUnavailable(Exception):
    """Postgres went away during a run: the message names the database and what to do."""


def run_partition(
    job: dg.JobDefinition,
    key: str,
    instance: dg.DagsterInstance,
    run_config: dict[str, Any] | None = None,
    progress=None,
    extra_tags: dict[str, str] | None = None,
) -> JobExecutionResult:
    """One campaign's run, in this process, that reacts to SIGTERM/SIGINT at once.

    Dagster's in-process executor holds SIGINT/SIGTERM back until a step boundary, and never looks while a
    step waits for a pool slot, so the run executes in a worker thread (where Dagster leaves signals alone)
    and the main thread answers a signal: the run is marked failed, its pool slots freed, and the demo exits.
    Whatever the run had written to Salesforce is in the sync ledger, and a re-run resumes from it.
    Runs left STARTED by a demo that was killed (SIGKILL, a lost machine) are marked failed first, so their
    pool slots cannot block this one. The run keeps no step output in memory, as a launched run does
    (``run_in_process.execute_partition``).
    """
    for run_id in fail_dead_runs(instance, reason=" by campaign-pipeline demo"):
        if progress:
            progress(f"run {run_id} was left running by a process that no longer exists: marked failed, slots freed")
    tags = {**worker_tags(), **(extra_tags or {})}
    # Chosen here, so the run can be named even when Postgres is the thing that failed.
    run_id = make_new_run_id()
    outcome: dict[str, Any] = {}

    def execute() -> None:
        try:
            outcome["result"] = execute_partition(
                job, key, instance, run_config=run_config or QUIET_LOGGING, tags=tags, run_id=run_id
            )
        except BaseException as exc:  # handed to the main thread, which raises it
            outcome["error"] = exc

    worker = threading.Thread(target=execute, name=f"run-{key}", daemon=True)
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.start()
        while worker.is_alive() and not received:
            worker.join(timeout=0.2)
        if received:
            raise DemoInterrupted(received[0], _stop_current_run(instance, run_id, received[0]))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        error = outcome["error"]
        if is_database_outage(error):
            raise DatabaseUnavailable(_database_outage(instance, run_id, key, error)) from error
        raise error
    return outcome["result"]


def _stop_current_run(instance: dg.DagsterInstance, run_id: str, signum: int) -> str | None:
    """Mark this process's unfinished run failed and free its pool slots; its worker thread dies with us."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return None
    message = f"campaign-pipeline demo was stopped by {signal.Signals(signum).name} during this run."
    instance.report_run_failed(run, message)
    free_slots_of_finished_runs(instance)
    return run.run_id


def _database_outage(instance: dg.DagsterInstance, run_id: str, key: str, error: BaseException) -> str:
    """The outage message; the run is marked failed with it now if Postgres is back, else on the next start."""
    message = database_outage_message(error, f"run {run_id} of campaign {key}")
    remember_failure(run_id, message)
    try:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, message)
            free_slots_of_finished_runs(instance)
    except Exception:
        logger.info("Postgres still unreachable; run %s is marked failed on the next start", run_id)
    return message


def run_demo(mode: str | None, progress, preview: bool = False) -> dict[str, Any]:
    """Sync every campaign (``preview``: a dry run of each, tagged as the UI's Launchpad would tag it)."""
    profile = load_active_profile()
    if mode:
        profile = profile.model_copy(update={"mode": mode})
    # A configuration error (a mapped field missing in the org, a wrong login) would fail every campaign's run
    # the same way: say it once, before any run, in one line.
    progress(f"mode {profile.mode}: checking the setup")
    deployment = choose_deployment(filter_bots=profile.mailchimp.filter_bots)
    stop_on_setup_error(profile, deployment)
    # Whose state this demo reads and writes: cursors, partitions and ledger rows of another account or org are
    # never used for these.
    source, target = deployment.mailchimp.source_identity(), deployment.salesforce.state_identity()
    progress(f"source {source}, target {target}")
    defs = build_definitions(profile)
    instance = demo_instance()
    progress(f"mode {profile.mode}: looking for sent campaigns")
    keys = discover_campaigns(defs, instance, profile.mailchimp.list_id, source=source, progress=progress)
    job = defs.resolve_job_def(SYNC_JOB_NAME)
    summaries = []
    for index, key in enumerate(keys, start=1):
        progress(f"[{index}/{len(keys)}] campaign {key}: syncing")
        result = run_partition(
            job, key, instance, progress=progress, extra_tags={PREVIEW_TAG: "true"} if preview else None
        )
        summary = summarise(key, result, preview)
        summaries.append(summary)
        status = "ok" if result.success else "FAILED (see the run in `dagster dev`)"
        progress(f"[{index}/{len(keys)}] campaign {key}: {status}")
    report: dict[str, Any] = {
        "mode": profile.mode,
        "preview": preview,
        "source": source,
        "target": target,
        "campaigns": [asdict(s) for s in summaries],
        "failed_runs": sum(not s.success for s in summaries),
    }
    if preview:
        # A dry run writes nothing; these are the writes the next real run would make.
        report["salesforce_writes"] = 0
        report["would_write"] = sum(
            c["salesforce"]["would_create"] + c["salesforce"]["would_update"] for c in report["campaigns"]
        )
    else:
        report["salesforce_writes"] = sum(
            c["salesforce"]["created"] + c["salesforce"]["updated"] for c in report["campaigns"]
        )
        if profile.matching.sync_opt_out:
            report["opted_out"] = sum(c["salesforce"]["opted_out"] for c in report["campaigns"])
    return report


def format_summary(report: dict[str, Any]) -> str:
    preview = bool(report.get("preview"))
    counters = PREVIEW_COUNTERS if preview else COUNTERS
    labels = ("would-create", "would-update", "would-skip", "would-fail") if preview else counters
    widths = [max(len(label), 7) for label in labels]
    header = (
        f"{'campaign':<14} {'title':<28} {'type':<10} {'sent':>7} {'deliv':>7} {'opened':>7} {'clicked':>7} {'bounced':>7} "
        f"{'unsub':>6} | " + " ".join(f"{label:>{width}}" for label, width in zip(labels, widths, strict=True))
    )
    whose = "".join(f"   {name.title()}: {report[name]}" for name in ("source", "target") if report.get(name))
    lines = [
        f"Mode: {report['mode']}{' (preview: nothing written)' if preview else ''}{whose}",
        header,
        "-" * len(header),
    ]
    for c in report["campaigns"]:
        sf = c["salesforce"]
        title = (c["title"] or "")[:26] + ("*" if not c["sent_at_is_exact"] else "")
        counts = " ".join(f"{sf[name]:>{width}}" for name, width in zip(counters, widths, strict=True))
        lines.append(
            f"{c['campaign_id']:<14} {title:<28} {c['campaign_type'][:10]:<10} {c['sent']:>7} {c['delivered']:>7} {c['opened']:>7} "
            f"{c['clicked']:>7} {c['bounced']:>7} {c['unsubscribed']:>6} | {counts}{'' if c['success'] else '  RUN FAILED'}"
        )
    if any(not c["sent_at_is_exact"] for c in report["campaigns"]):
        lines.append(
            "* automation email: Mailchimp gives no per-recipient send time, so 'Sent' times are approximate "
            "(never after the member's first activity) and time to open is left empty"
        )
    if preview:
        lines.append(f"Preview: nothing written; the next real run would write {report['would_write']} records")
    else:
        lines.append(f"Salesforce records written this run: {report['salesforce_writes']}")
    if "opted_out" in report:
        lines.append(f"Leads/Contacts marked HasOptedOutOfEmail (unsubscribed in Mailchimp): {report['opted_out']}")
    return "\n".join(lines)


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
