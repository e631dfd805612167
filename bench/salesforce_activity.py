"""Benchmark of modes activity / notes: desired Tasks (or Notes) for N recipients pushed to the sandbox org over HTTPS.

    python -m bench.salesforce_activity --mode activity --members 100000

Prints one JSON object with the engine bench's keys, every one of them (bench.salesforce_sync): members, matched,
records, records_by_kind, write_calls, min_write_calls, read_calls, min_read_calls, noop_read_calls,
noop_write_calls (a second run with no new activity), update_write_calls and updated (a third run after one more
open for 1% of the members), seconds (the first sync: matching, desired records and writing), match_seconds,
noop_seconds, api, mirror, created, failed, stopped, desired_seconds, build_seconds (synthetic data and the org's
people) and peak_rss_mb; mode notes adds file_bytes
(decoded bytes of note content and files the first run wrote: the org's file storage it takes) and
noop_file_bytes. ``min_write_calls`` is the fewest calls the APIs' documented limits allow for the records
(bench.minimums): per kind the fewer of one Bulk API 2.0 job (create, upload, close per 150 MB of CSV) and one
sObject Collections call per 200 records (always the latter for kinds with blob fields — ContentNote,
ContentVersion, Attachment — which Bulk API 2.0 cannot load), whatever our bulk threshold.
``--notes-format`` picks Enhanced Notes and Files (default) or classic Notes and Attachments. ``bench.salesforce_sync
--mode activity|notes`` runs this bench, forwarding --members, --bulk-threshold and --seed.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import minimums
from bench.database import bench_database
from campaign_pipeline.core.events import email_hashes, event_ids
from campaign_pipeline.core.metrics import member_statuses
from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.modes import desired_records
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import sync_desired_records
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox, seed_people

SEND = pd.Timestamp("2026-03-02 15:00", tz="UTC")
URL_COUNT = 40
MODES = ("activity", "notes")


def synthetic_campaign(members: int, opens_per_member: float, clicks_per_member: float, seed: int):
    """Recipients, events (opens and clicks, Poisson per member) and the report of one campaign."""
    generator = np.random.default_rng(seed)
    addresses = pd.Series([f"member{n}@example.com" for n in range(members)], dtype=object)
    email_id = email_hashes(addresses)
    recipients = pd.DataFrame(
        {
            "campaign_id": pd.Series(["bench1"] * members, dtype=object),
            "email_id": email_id,
            "email_address": addresses,
            "send_status": pd.Series(["sent"] * members, dtype=object),
            "sent_at": pd.Series([SEND] * members, dtype="datetime64[ns, UTC]"),
            "sent_at_is_exact": np.ones(members, dtype=bool),
        }
    )
    opens = generator.poisson(opens_per_member, members)
    clicks = generator.poisson(clicks_per_member, members)
    member_of = np.concatenate([np.repeat(np.arange(members), opens), np.repeat(np.arange(members), clicks)])
    is_click = np.concatenate([np.zeros(opens.sum(), dtype=bool), np.ones(clicks.sum(), dtype=bool)])
    seconds = generator.integers(60, 30 * 86_400, len(member_of))
    url_index = generator.integers(0, URL_COUNT, len(member_of))
    urls = np.array([f"https://shop.example/p/{i}" for i in range(URL_COUNT)], dtype=object)
    events = pd.DataFrame(
        {
            "campaign_id": "bench1",
            "email_id": email_id.to_numpy()[member_of],
            "email_address": addresses.to_numpy()[member_of],
            "action": np.where(is_click, "click", "open").astype(object),
            "timestamp": SEND + pd.to_timedelta(seconds, unit="s"),
            "url": pd.Series(np.where(is_click, urls[url_index], None), dtype=object).where(is_click, pd.NA),
            "bounce_type": pd.Series(pd.NA, index=range(len(member_of)), dtype=object),
        }
    )
    events["timestamp"] = events["timestamp"].astype("datetime64[ns, UTC]")
    events.insert(0, "event_id", event_ids(events))
    events = events.drop_duplicates("event_id").reset_index(drop=True)
    report = pd.DataFrame(
        {
            "campaign_id": ["bench1"],
            "campaign_title": ["Benchmark campaign"],
            "subject_line": ["Benchmark"],
            "campaign_type": ["regular"],
            "send_time": pd.Series([SEND], dtype="datetime64[ns, UTC]"),
        }
    )
    return recipients, events, report


def more_activity(events: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The events plus one later open for 1% of the members who have any: the run after a little new activity."""
    members = events["email_id"].drop_duplicates()
    picked = members.sample(n=max(1, len(members) // 100), random_state=seed + 1)
    extra = events[events["email_id"].isin(picked)].drop_duplicates("email_id").copy()
    extra["action"] = "open"
    extra["url"] = pd.NA
    extra["timestamp"] = events["timestamp"].max() + pd.Timedelta(hours=1)
    extra["event_id"] = event_ids(extra.drop(columns="event_id"))
    return pd.concat([events, extra], ignore_index=True)


def min_write_calls(records: int, bulk_allowed: bool = True, csv_bytes: int = 0) -> int:
    """The APIs' floor for one kind (bench.minimums); a kind Bulk cannot load (Attachments) takes Collections calls."""
    return minimums.salesforce_write_calls(records, bulk_allowed=bulk_allowed, csv_bytes=csv_bytes)


def _csv_bytes(frame: pd.DataFrame) -> int:
    return len(frame[salesforce_field_columns(frame)].to_csv(index=False).encode()) if len(frame) else 0


def run(
    mode: str,
    members: int,
    opens: float,
    clicks: float,
    bulk_threshold: int,
    seed: int,
    notes_format: str = "enhanced",
) -> dict[str, object]:
    profile = SyncProfile.model_validate(
        {
            "mode": mode,
            "sync": {"bulk_threshold": bulk_threshold, "api_call_budget": 1_000_000},
            "activity": {"notes_format": notes_format},
        }
    )
    with tempfile.TemporaryDirectory(prefix="activity_bench_") as scratch:
        engine, server = bench_database(Path(scratch))
        suffix = uuid.uuid4().hex[:8]
        try:
            with SalesforceSandbox(engine, schema=f"bench_activity_org_{suffix}", daily_api_limit=10_000_000) as org:
                started = time.perf_counter()
                recipients, events, report = synthetic_campaign(members, opens, clicks, seed)
                statuses = member_statuses(recipients, events)
                seed_people(org, recipients["email_address"].tolist(), seed=seed, coverage=1.0)
                ledger = SyncLedger(engine, schema=f"bench_activity_ledger_{suffix}")

                def client() -> SalesforceClient:
                    return SalesforceClient(
                        org.client(),
                        target="sandbox org (bench)",
                        is_sandbox=True,
                        api_call_budget=1_000_000,
                        backoff_seconds=0.0,
                        reauthenticate=lambda: sandbox_session(org),
                    )

                mirror = PeopleMirror(engine, schema=f"bench_activity_mirror_{suffix}")
                content = pd.DataFrame({"campaign_id": ["bench1"], "html": ["<html><p>Benchmark</p></html>"]})
                refreshes = []

                def sync(event_frame: pd.DataFrame, run_statuses: pd.DataFrame) -> dict[str, Any]:
                    """One run as the assets do it: matching (reads the org like the asset), desired records, push."""
                    sync_client = client()
                    began = time.perf_counter()
                    matches, _ = match_campaign_members(sync_client, run_statuses, mirror)
                    assert mirror.last_refresh is not None
                    refreshes.append(mirror.last_refresh)
                    matched_at = time.perf_counter()
                    desired = desired_records(
                        profile,
                        {
                            "raw_email_events": event_frame,
                            "member_statuses": run_statuses,
                            "salesforce_matches": matches,
                            "mailchimp_campaign_report": report,
                            "campaign_content": content,
                        },
                    )
                    desired_at = time.perf_counter()
                    result = sync_desired_records(sync_client, ledger, desired, profile.sync)
                    return {
                        "report": result,
                        "desired": desired,
                        "matched": len(matches),
                        "match_seconds": matched_at - began,
                        "desired_seconds": desired_at - matched_at,
                        "seconds": time.perf_counter() - began,
                    }

                built = time.perf_counter() - started
                first_run = sync(events, statuses)
                noop_run = sync(events, statuses)
                changed = more_activity(events, seed)
                update_run = sync(changed, member_statuses(recipients, changed))
                first, second, desired = first_run["report"], noop_run["report"], first_run["desired"]
                records = sum(len(item.frame) for item in desired)
                files = (
                    {
                        "notes_format": notes_format,
                        "file_bytes": first.total("file_bytes"),
                        "noop_file_bytes": second.total("file_bytes"),
                    }
                    if mode == "notes"
                    else {}
                )
                return {
                    "mode": mode,
                    "members": members,
                    "matched": first_run["matched"],
                    "records": records,
                    "records_by_kind": {item.kind.name: len(item.frame) for item in desired},
                    "write_calls": first.write_calls,
                    "min_write_calls": sum(
                        min_write_calls(len(item.frame), item.kind.bulk_allowed, _csv_bytes(item.frame))
                        for item in desired
                    ),
                    "read_calls": first.read_calls,
                    "min_read_calls": sum(
                        minimums.salesforce_read_calls(len(org.records(sobject))) for sobject in ("Contact", "Lead")
                    ),
                    "noop_read_calls": second.read_calls,
                    "noop_write_calls": second.write_calls,
                    "update_write_calls": update_run["report"].write_calls,
                    "updated": update_run["report"].total("updated"),
                    "seconds": round(first_run["seconds"], 2),
                    "match_seconds": round(first_run["match_seconds"], 2),
                    "noop_seconds": round(noop_run["seconds"], 2),
                    "api": {name: outcome.api for name, outcome in first.outcomes.items()},
                    "mirror": [
                        {"mode": r.mode, "rows": r.rows, "upserted": r.upserted, "calls": r.calls}
                        for r in refreshes[:2]
                    ],
                    "created": first.total("created"),
                    "failed": first.total("failed"),
                    "stopped": first.stopped,
                    "desired_seconds": round(first_run["desired_seconds"], 2),
                    "build_seconds": round(built, 2),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                    **files,
                }
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "bench_activity_ledger_{suffix}" CASCADE')
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "bench_activity_org_{suffix}" CASCADE')
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "bench_activity_mirror_{suffix}" CASCADE')
            engine.dispose()
            if server is not None:
                server.cleanup()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="activity")
    parser.add_argument("--members", type=int, default=10_000, help="Recipients of the campaign, all matched.")
    parser.add_argument("--opens-per-member", type=float, default=2.2, help="Mean opens per member (Poisson).")
    parser.add_argument("--clicks-per-member", type=float, default=0.8, help="Mean clicks per member (Poisson).")
    parser.add_argument("--bulk-threshold", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--notes-format", choices=("enhanced", "classic"), default="enhanced", help="Mode notes.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(
        args.mode,
        args.members,
        args.opens_per_member,
        args.clicks_per_member,
        args.bulk_threshold,
        args.seed,
        args.notes_format,
    )
    print(json.dumps(result))
    return 0 if not result["failed"] and result["noop_write_calls"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
