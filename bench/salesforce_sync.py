"""Benchmark of the Salesforce sync engine: one campaign's records pushed to the sandbox org over HTTPS.

    python -m bench.salesforce_sync --members 10000 [--mode campaign|campaign_totals] [--bulk-threshold 2000]

Prints one JSON object: members, matched, write_calls (first sync), min_write_calls (the fewest calls the APIs'
documented limits allow for the same records, see bench.minimums: per kind the fewer of one sObject Collections
call per 200 records and one Bulk API 2.0 job, whatever our bulk threshold), read_calls (first sync, the people
mirror's fill included), min_read_calls (reading the org's Contacts and Leads once, bench.minimums),
noop_read_calls and noop_write_calls (a second sync with nothing new), update_write_calls and updated (a third
sync after 1% of members changed), mirror (the first and the no-op refresh: rows, mode, calls), seconds (first
sync: matching and writing), match_seconds, noop_seconds, api, records and records_by_kind (desired records),
created, failed, stopped, desired_seconds, build_seconds (synthetic data and the org's people), peak_rss_mb. Every
mode reports these keys; mode notes adds notes_format, file_bytes and noop_file_bytes. Modes activity and notes run
``bench.salesforce_activity`` with --members, and --bulk-threshold and --seed when given (its own defaults
otherwise).
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

import numpy as np
import pandas as pd

from bench import minimums
from bench.database import bench_database
from campaign_pipeline.core.events import email_hashes
from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.modes import desired_records, mode_spec
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import DesiredRecords, sync_desired_records
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox, seed_people

CAMPAIGN_ID = "bench0001"
SEND = pd.Timestamp("2026-03-02 15:00", tz="UTC")
STATUSES = np.array(["Sent", "Opened", "Clicked", "Bounced", "Unsubscribed"], dtype=object)
STATUS_SHARES = [0.55, 0.25, 0.12, 0.05, 0.03]
MODES = ("campaign", "campaign_totals", "activity", "notes")
DEFAULT_BULK_THRESHOLD = 2000
DEFAULT_SEED = 7
DEFAULT_COVERAGE = 0.6


def synthetic_member_statuses(members: int, seed: int) -> pd.DataFrame:
    """member_statuses of one campaign: statuses drawn at realistic shares, metrics consistent with them."""
    generator = np.random.default_rng(seed)
    addresses = pd.Series([f"member{n}@example.com" for n in range(members)], dtype=object)
    status = STATUSES[generator.choice(len(STATUSES), size=members, p=STATUS_SHARES)]
    opened = np.isin(status, ["Opened", "Clicked"])
    clicked = status == "Clicked"
    minutes = pd.to_timedelta(generator.integers(1, 5000, size=members), unit="min")
    event_at = pd.Series(SEND + minutes)
    total_opens = np.where(opened, generator.integers(1, 6, size=members), 0).astype("int64")
    return pd.DataFrame(
        {
            "campaign_id": CAMPAIGN_ID,
            "email_id": email_hashes(addresses),
            "email_address": addresses,
            "is_recipient": True,
            "send_status": "sent",
            "sent_at": SEND,
            "sent_at_is_exact": True,
            "latest_status": status,
            "latest_status_at": event_at.where(status != "Sent", SEND),
            "total_opens": total_opens,
            "unique_opens": opened.astype("int64"),
            "total_clicks": clicked.astype("int64"),
            "unique_clicks": clicked.astype("int64"),
            "last_clicked_url": pd.Series("https://example.com/offer", index=range(members), dtype=object).where(
                clicked, None
            ),
            "was_opened": opened,
            "was_clicked": clicked,
            "was_bounced": status == "Bounced",
            "was_unsubscribed": status == "Unsubscribed",
        }
    )


def campaign_frames(statuses: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """campaign_totals and mailchimp_campaign_report for the synthetic campaign (only what the records read)."""
    delivered = int((~statuses["was_bounced"]).sum())
    unique_opens = int(statuses["unique_opens"].sum())
    totals = pd.DataFrame(
        {
            "campaign_id": [CAMPAIGN_ID],
            "emails_sent": [len(statuses)],
            "delivered": [delivered],
            "unique_opens": [unique_opens],
            "total_opens": [int(statuses["total_opens"].sum())],
            "total_clicks": [int(statuses["total_clicks"].sum())],
            "open_rate": [unique_opens / delivered if delivered else 0.0],
        }
    )
    report = pd.DataFrame(
        {
            "campaign_id": [CAMPAIGN_ID],
            "campaign_title": ["Benchmark campaign"],
            "subject_line": ["A benchmark"],
            "campaign_type": ["regular"],
            "send_time": pd.to_datetime([SEND], utc=True),
        }
    )
    return totals, report


def min_write_calls(desired: list[DesiredRecords]) -> int:
    """The APIs' floor for writing these records (bench.minimums), from their count and their size as CSV."""
    total = 0
    for item in desired:
        # Statuses: the org makes "Sent" itself on a new Campaign, so only the others are created.
        frame = item.frame.iloc[1:] if item.kind.name == "campaign_member_status" else item.frame
        csv_bytes = len(frame[salesforce_field_columns(frame)].to_csv(index=False).encode()) if len(frame) else 0
        total += minimums.salesforce_write_calls(len(frame), bulk_allowed=item.kind.bulk_allowed, csv_bytes=csv_bytes)
    return total


def min_read_calls(org: SalesforceSandbox) -> int:
    """Reading every Contact and Lead once (what matching needs), at the APIs' floor."""
    return sum(minimums.salesforce_read_calls(len(org.records(sobject))) for sobject in ("Contact", "Lead"))


def run(members: int, mode: str, bulk_threshold: int, seed: int, coverage: float) -> dict:
    profile = SyncProfile.model_validate(
        {
            "mode": mode,
            "field_mapping": {
                "campaign": {
                    "emails_sent": "NumberSent",
                    "unique_opens": "Unique_Opens__c",
                    "open_rate": "Open_Rate__c",
                },
                **(
                    {"campaign_member": {"total_opens": "Total_Opens__c", "last_clicked_url": "Last_Clicked_URL__c"}}
                    if mode == "campaign"
                    else {}
                ),
            },
            "sync": {"bulk_threshold": bulk_threshold, "api_call_budget": 1_000_000},
        }
    )
    build_started = time.perf_counter()
    statuses = synthetic_member_statuses(members, seed)
    totals, report = campaign_frames(statuses)
    suffix = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-salesforce-") as workdir:
        engine, server = bench_database(Path(workdir))
        try:
            with SalesforceSandbox(engine, schema=f"bench_sf_{suffix}", daily_api_limit=10_000_000) as org:
                seed_people(org, statuses["email_address"].tolist(), seed=seed, coverage=coverage)
                ledger = SyncLedger(engine, schema=f"bench_ledger_{suffix}")
                mirror = PeopleMirror(engine, schema=f"bench_mirror_{suffix}")
                refreshes = []

                def client() -> SalesforceClient:
                    return SalesforceClient(
                        org.client(),
                        target="Salesforce target: SANDBOX org (bench)",
                        is_sandbox=True,
                        api_call_budget=1_000_000,
                        backoff_seconds=0.05,
                        reauthenticate=lambda: sandbox_session(org),
                    )

                def sync(frame: pd.DataFrame):
                    sync_client = client()
                    started = time.perf_counter()
                    frames = {"campaign_totals": totals, "mailchimp_campaign_report": report, "member_statuses": frame}
                    if mode_spec(profile).matches_people:
                        frames["salesforce_matches"], _ = match_campaign_members(sync_client, frame, mirror)
                        assert mirror.last_refresh is not None
                        refreshes.append(mirror.last_refresh)
                    matched_at = time.perf_counter()
                    desired = desired_records(profile, frames)
                    desired_seconds.append(time.perf_counter() - matched_at)
                    result = sync_desired_records(sync_client, ledger, desired, profile.sync)
                    return result, desired, matched_at - started, time.perf_counter() - started

                desired_seconds: list[float] = []
                build_seconds = time.perf_counter() - build_started
                first, desired, match_seconds, seconds = sync(statuses)
                least_writes = min_write_calls(desired)
                least_reads = min_read_calls(org) if mode == "campaign" else 0
                noop, _, _, noop_seconds = sync(statuses)
                changed = statuses.copy()
                picks = np.random.default_rng(seed + 1).choice(len(changed), size=max(1, members // 100), replace=False)
                changed.loc[picks, "total_opens"] += 1
                update, _, _, _ = sync(changed)
        finally:
            if server is not None:
                server.cleanup()
    member_outcome = first.outcomes.get("campaign_member")
    return {
        "mode": mode,
        "members": members,
        "matched": member_outcome.desired if member_outcome else 0,
        "records": sum(len(item.frame) for item in desired),
        "records_by_kind": {item.kind.name: len(item.frame) for item in desired},
        "write_calls": first.write_calls,
        "min_write_calls": least_writes,
        "read_calls": first.read_calls,
        "min_read_calls": least_reads,
        "noop_read_calls": noop.read_calls,
        "noop_write_calls": noop.write_calls,
        "update_write_calls": update.write_calls,
        "updated": update.total("updated"),
        "seconds": round(seconds, 3),
        "match_seconds": round(match_seconds, 3),
        "noop_seconds": round(noop_seconds, 3),
        "created": first.total("created"),
        "failed": first.total("failed"),
        "api": {name: outcome.api for name, outcome in first.outcomes.items()},
        "mirror": [
            {"mode": refresh.mode, "rows": refresh.rows, "upserted": refresh.upserted, "calls": refresh.calls}
            for refresh in refreshes[:2]
        ],
        "stopped": first.stopped,
        "desired_seconds": round(desired_seconds[0], 3),
        "build_seconds": round(build_seconds, 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--mode", choices=MODES, default="campaign")
    # Defaults are None so that modes activity/notes forward only what was given and keep their bench's defaults.
    parser.add_argument("--bulk-threshold", type=int, default=None, help=f"default {DEFAULT_BULK_THRESHOLD}")
    parser.add_argument(
        "--coverage",
        type=float,
        default=None,
        help=f"share of members with a Lead/Contact (default {DEFAULT_COVERAGE}; modes campaign, campaign_totals)",
    )
    parser.add_argument("--seed", type=int, default=None, help=f"default {DEFAULT_SEED} (modes campaign*)")
    args, rest = parser.parse_known_args(argv)
    if args.mode in ("activity", "notes"):
        from bench import salesforce_activity

        if args.coverage is not None:
            parser.error("--coverage applies to modes campaign and campaign_totals: the activity bench matches all")
        forwarded = ["--mode", args.mode, "--members", str(args.members)]
        if args.bulk_threshold is not None:
            forwarded += ["--bulk-threshold", str(args.bulk_threshold)]
        if args.seed is not None:
            forwarded += ["--seed", str(args.seed)]
        return salesforce_activity.main([*forwarded, *rest])
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    bulk_threshold = DEFAULT_BULK_THRESHOLD if args.bulk_threshold is None else args.bulk_threshold
    seed = DEFAULT_SEED if args.seed is None else args.seed
    coverage = DEFAULT_COVERAGE if args.coverage is None else args.coverage
    print(json.dumps(run(args.members, args.mode, bulk_threshold, seed, coverage)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
