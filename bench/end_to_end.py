"""Benchmark of the whole job: the real sync_campaign_job for one sandbox campaign of N recipients, then a no-op re-run.

    python -m bench.end_to_end --recipients 100000 --mode campaign      (or --mode activity)

The Mailchimp sandbox serves one regular campaign sent to an audience of N members (bounded-memory generation);
the sandbox Salesforce org, in the same Postgres, holds Contacts and Leads for 60% of them. Each emulator runs in
its own process (bench.emulators), so this process holds only the runs. The job runs here with the project's
Definitions for the mode (default sync profile otherwise: default API-call budget), exactly as a run launched
from the UI; the second run has nothing new. Postgres is a throwaway embedded server, or
CAMPAIGN_PIPELINE_DATABASE_URL when set.

Prints one JSON object: recipients, events, seconds (first run), noop_seconds, api_wait_seconds (wall time of the
first run with a request to either API in flight or a Bulk poll wait under way, bench.api_wait), own_seconds
(the rest: our processing, Postgres and Dagster included) and own_fraction, api_wait_by_api, run_cpu_seconds (this
process's CPU time in the first run), the same for the no-op run, peak_rss_mb (this process, the run process,
during the two runs; first_peak_rss_mb and noop_peak_rss_mb each run's, the no-op's on top of what the first
left allocated; peak_rss_mb_by_asset and noop_peak_rss_mb_by_asset, sampled each 0.25 s, the highest in each step),
emulator_peak_rss_mb (each emulator process; the Mailchimp one's peak while generating is
build_peak_rss_mb), seconds_by_asset (step wall times of the first run) and own_seconds_by_asset (the same less
the API waits within each), mailchimp_calls, mailchimp_min_calls
(pages strictly needed at Mailchimp's 1,000 a page, plus the report), salesforce_read_calls,
salesforce_write_calls, salesforce_min_write_calls (bench.minimums, from the desired records the run stored),
noop_salesforce_calls, salesforce_requests_by_kind / _by_asset and noop_salesforce_requests_by_kind (requests
the run sent, a transport retry inside one not counted again; bench.api_wait.request_kind), noop_mailchimp_calls,
stored_bytes_by_table (the pipeline's schema), success, and
build_seconds (generating the account and the org's people, not part of any run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import sqlalchemy as sa

from bench import api_wait, emulators, minimums
from bench.database import bench_database
from campaign_pipeline.storage import database

MODES = ("campaign", "activity")
SALESFORCE_SCHEMA = emulators.SALESFORCE_SCHEMA
DESIRED_TABLES = ("asset_sf_campaign", "asset_sf_campaign_members", "asset_sf_tasks")
QUIET_LOGGING = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _org_calls(engine: sa.Engine, schema: str) -> int:
    """API requests the sandbox org has counted (its daily usage, summed over days)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f'SELECT coalesce(sum(used), 0) FROM "{schema}".api_usage')).scalar_one())


def _step_times(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's start and end (epoch seconds) in the run's event log."""
    started: dict[str, float] = {}
    times: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            times[event.step_key] = (started[event.step_key], entry.timestamp)
    return times


def _materialized(result: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        found[materialization.asset_key.to_user_string()] = {
            key: getattr(value, "value", value) for key, value in materialization.metadata.items()
        }
    return found


def _stored_bytes(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r' "
                "ORDER BY 2 DESC"
            ),
            {"s": database.PIPELINE_SCHEMA},
        )
        return {name: int(size) for name, size in rows}


def _min_write_calls(engine: sa.Engine, campaign_id: str) -> int:
    from campaign_pipeline.core.salesforce_records import salesforce_field_columns
    from campaign_pipeline.storage.frames import read_frame, table_exists

    total = 0
    for table in DESIRED_TABLES:
        if not table_exists(engine, table):
            continue
        frame = read_frame(engine, table, [campaign_id])
        if len(frame):
            fields = salesforce_field_columns(frame)
            csv_bytes = len(frame[fields].to_csv(index=False).encode())
            total += minimums.salesforce_write_calls(len(frame), csv_bytes=csv_bytes)
    # CampaignMemberStatus values: the org makes "Sent" itself, the other four take one Collections call.
    return total + (1 if table_exists(engine, "asset_sf_campaign") else 0)


def run(recipients: int, mode: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-end-to-end-") as scratch:
        workdir = Path(scratch)
        engine, server = bench_database(workdir)
        saved = {name: os.environ.get(name) for name in (database.DATABASE_URL_ENV, database.DATA_DIR_ENV)}
        os.environ[database.DATABASE_URL_ENV] = engine.url.render_as_string(hide_password=False)
        os.environ[database.DATA_DIR_ENV] = str(workdir / "data")
        try:
            return _run(engine, recipients, mode, seed)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            engine.dispose()
            database._engine_for.cache_clear()
            if server is not None:
                server.cleanup()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _salesforce_requests(waits: api_wait.ApiWaitClock) -> dict[str, int]:
    """The run's Salesforce requests by kind (bench.api_wait.request_kind), most first."""
    kinds = Counter(api_wait.request_kind(method, url) for _, label, method, url in waits.sent if label == "salesforce")
    return dict(kinds.most_common())


def _salesforce_requests_by_step(waits: api_wait.ApiWaitClock, steps: dict[str, tuple[float, float]]) -> dict[str, int]:
    counts = {
        step: sum(1 for at, label, _, _ in waits.sent if label == "salesforce" and start <= at <= end)
        for step, (start, end) in steps.items()
    }
    return {step: count for step, count in counts.items() if count}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(engine: sa.Engine, recipients: int, mode: str, seed: int) -> dict[str, Any]:
    from campaign_pipeline.definitions import SYNC_JOB_NAME, build_definitions
    from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
    from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS
    from campaign_pipeline.mailchimp.sensors import sent_campaign_key
    from campaign_pipeline.profile import SyncProfile
    from campaign_pipeline.run_in_process import execute_partition

    profile = SyncProfile.model_validate({"mode": mode})
    url = engine.url.render_as_string(hide_password=False)
    with emulators.served_emulators(recipients, seed, url) as served:
        campaign_id = served.mailchimp_info["campaign_id"]
        defs = build_definitions(profile)
        # The sandbox account served over HTTP and read as a live account is: only its size is ours.
        mailchimp = LiveMailchimpResource(
            connection=MailchimpConnection(
                api_key=served.mailchimp_info["api_key"], base_url=served.mailchimp_info["base_url"]
            ),
            list_id=profile.mailchimp.list_id,
            filter_bots=profile.mailchimp.filter_bots,
        )
        defs = dg.Definitions(
            assets=list(defs.assets or []),
            asset_checks=list(defs.asset_checks or []),
            jobs=list(defs.jobs or []),
            resources={**(defs.resources or {}), "mailchimp": mailchimp, "salesforce": served.salesforce_resource()},
        )
        job = defs.resolve_job_def(SYNC_JOB_NAME)
        instance = dg.DagsterInstance.ephemeral()
        # The key the sensor gives the campaign (`<send date>_<title slug>_<campaign id>`), from its listing.
        key = sent_campaign_key(next(c for c in mailchimp.list_sent_campaigns() if c.id == campaign_id))
        instance.add_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS, [key])
        label_of = api_wait.label_by_prefix(
            {
                _origin(served.mailchimp_info["base_url"]): "mailchimp",
                _origin(served.salesforce_info["instance_url"]): "salesforce",
            }
        )

        def one_run() -> dict[str, Any]:
            mailchimp_before, salesforce_before = served.mailchimp_calls(), _org_calls(engine, SALESFORCE_SCHEMA)
            cpu_before = _cpu_seconds()
            # Epoch seconds, the clock of Dagster's event log, so each step's own time can be told too.
            with api_wait.ApiWaitClock(time.time).installed(label_of) as waits:
                started = time.perf_counter()
                # As a launched run executes (no step output kept in memory), not execute_in_process, which
                # captures every output for the result and so would count each step's frames till the end.
                result = execute_partition(job, key, instance, run_config=QUIET_LOGGING)
                seconds = time.perf_counter() - started
            waited = waits.seconds()
            return {
                "result": result,
                "waits": waits,
                "seconds": seconds,
                "cpu_seconds": _cpu_seconds() - cpu_before,
                "api_wait_seconds": waited,
                "api_wait_by_api": {name: round(waits.seconds(name), 2) for name in ("mailchimp", "salesforce")},
                "mailchimp_calls": served.mailchimp_calls() - mailchimp_before,
                "salesforce_calls": _org_calls(engine, SALESFORCE_SCHEMA) - salesforce_before,
            }

        # The peak is the runs' own: Linux resets the high-water mark on request (the generator is elsewhere).
        emulators.reset_peak_rss()
        with emulators.RssSampler() as rss:
            first = one_run()
            metadata = _materialized(first["result"])
            # Each run's own peak; the no-op run's starts from what the first one left allocated in this process.
            first_peak_rss = emulators.reset_peak_rss()
            noop = one_run()
        noop_peak_rss = emulators.peak_rss_mb()
        emulator_rss = served.peak_rss_mb()
        mailchimp_min = served.mailchimp_min_calls()
    sync = metadata.get("salesforce_sync", {})
    events = metadata.get("raw_email_events", {}).get(
        "total_events", metadata.get("raw_email_events", {}).get("dagster/row_count")
    )
    write_calls = int(sync.get("write_calls", 0) or 0)
    seconds, waited = first["seconds"], first["api_wait_seconds"]
    steps = _step_times(instance, first["result"].run_id)
    noop_steps = _step_times(instance, noop["result"].run_id)
    return {
        "mode": mode,
        "recipients": recipients,
        "events": events,
        "success": first["result"].success and noop["result"].success,
        "seconds": round(seconds, 2),
        "noop_seconds": round(noop["seconds"], 2),
        "api_wait_seconds": round(waited, 2),
        "own_seconds": round(seconds - waited, 2),
        "own_fraction": round((seconds - waited) / seconds, 3) if seconds else None,
        "api_wait_by_api": first["api_wait_by_api"],
        "run_cpu_seconds": round(first["cpu_seconds"], 2),
        "noop_api_wait_seconds": round(noop["api_wait_seconds"], 2),
        "noop_own_seconds": round(noop["seconds"] - noop["api_wait_seconds"], 2),
        "peak_rss_mb": max(first_peak_rss, noop_peak_rss),
        "first_peak_rss_mb": first_peak_rss,
        "noop_peak_rss_mb": noop_peak_rss,
        "emulator_peak_rss_mb": emulator_rss,
        "build_peak_rss_mb": served.mailchimp_info["build_peak_rss_mb"],
        "seconds_by_asset": {step: round(end - start, 2) for step, (start, end) in steps.items()},
        "peak_rss_mb_by_asset": {step: rss.peak_between(start, end) for step, (start, end) in steps.items()},
        "noop_peak_rss_mb_by_asset": {step: rss.peak_between(start, end) for step, (start, end) in noop_steps.items()},
        "own_seconds_by_asset": {
            step: round(end - start - first["waits"].overlap(start, end), 2) for step, (start, end) in steps.items()
        },
        "mailchimp_calls": first["mailchimp_calls"],
        "mailchimp_min_calls": mailchimp_min,
        "salesforce_read_calls": first["salesforce_calls"] - write_calls,
        "salesforce_write_calls": write_calls,
        "salesforce_min_write_calls": _min_write_calls(engine, campaign_id),
        "noop_salesforce_calls": noop["salesforce_calls"],
        "salesforce_requests_by_kind": _salesforce_requests(first["waits"]),
        "salesforce_requests_by_asset": _salesforce_requests_by_step(first["waits"], steps),
        "noop_salesforce_requests_by_kind": _salesforce_requests(noop["waits"]),
        "noop_mailchimp_calls": noop["mailchimp_calls"],
        "mirror": {
            key: value for key, value in metadata.get("salesforce_matches", {}).items() if key.startswith("mirror_")
        },
        "stored_bytes_by_table": _stored_bytes(engine),
        "build_seconds": served.mailchimp_info["build_seconds"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--mode", choices=MODES, default="campaign")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if args.recipients < 1:
        parser.error("--recipients must be at least 1")
    result = run(args.recipients, args.mode, args.seed)
    print(json.dumps(result))
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
