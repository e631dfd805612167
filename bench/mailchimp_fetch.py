"""Benchmark: fetch and land one large sandbox campaign over HTTP with the real client; prints JSON.

    python -m bench.mailchimp_fetch [--recipients 100000] [--page-size 1000] [--rate-429 0.0]

`min_api_calls` is the pages strictly needed at Mailchimp's maximum page of 1,000 (email-activity,
unsubscribed and sent-to, at least one page each) plus the report, whatever --page-size says; `api_calls` is what the resource actually sent,
retries included. `incremental_api_calls` is a second events fetch with no new activity;
`resync_api_calls` adds the recipients step of a re-sync (one report call once sent-to is landed).
Postgres is a throwaway embedded server (or CAMPAIGN_PIPELINE_DATABASE_URL when set).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import minimums
from bench.database import bench_database
from campaign_pipeline.mailchimp.landing import LandingStore, fetch_and_land_events, fetch_and_land_recipients
from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
from campaign_pipeline.sandbox.mailchimp_api import MailchimpFaults, MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.mailchimp_oracle import truth_events
from campaign_pipeline.storage import database


def run(recipients: int, page_size: int, rate_429: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="mailchimp_bench_") as scratch:
        workdir = Path(scratch)
        engine, server = bench_database(workdir)
        try:
            account = SandboxAccount(
                seed=2026, n_members=recipients, n_regular_campaigns=1, n_automation_emails=0, include_draft=False
            )
            [campaign_id] = account.campaign_ids()
            store = LandingStore(engine)
            with MailchimpSandbox(account, faults=MailchimpFaults(rate_429_empty=rate_429, seed=1)) as sandbox:
                mailchimp = LiveMailchimpResource(
                    connection=MailchimpConnection(api_key=sandbox.api_key, base_url=sandbox.base_url),
                    page_size=page_size,
                    backoff_base_seconds=0.05,
                    backoff_max_seconds=1.0,
                )
                started = time.perf_counter()
                recipient_sync = fetch_and_land_recipients(mailchimp, store, campaign_id)
                recipients_done = time.perf_counter()
                first = fetch_and_land_events(mailchimp, store, campaign_id)
                events_done = time.perf_counter()
                full_calls = mailchimp.stats.snapshot()

                incremental = fetch_and_land_events(mailchimp, store, campaign_id)
                incremental_done = time.perf_counter()
                recipients_again = fetch_and_land_recipients(mailchimp, store, campaign_id)

                activity_members = sandbox.routes.email_activity({"count": "1", "offset": "0"}, campaign_id)[
                    "total_items"
                ]
                spec = account.spec(campaign_id)
                assert spec is not None
                unsubscribes = len(account.unsubscribed_listing(spec))
                # The floor at Mailchimp's own maximum page, not at the page size this run chose.
                min_api_calls = minimums.mailchimp_calls(
                    len(recipient_sync.recipients), activity_members, unsubscribes, single_calls=1
                )
                truth_event_count = len(truth_events(account, campaign_id))
            return {
                "recipients": len(recipient_sync.recipients),
                "events": first.landing.total_events,
                "events_match_truth": first.landing.total_events == truth_event_count,
                "quarantined": first.landing.total_quarantined,
                "page_size": page_size,
                "api_calls": full_calls.api_calls,
                "min_api_calls": min_api_calls,
                "retries": full_calls.retries,
                "incremental_api_calls": incremental.calls.api_calls,
                "incremental_new_events": incremental.landing.new_events,
                "resync_api_calls": incremental.calls.api_calls + recipients_again.calls.api_calls,
                "seconds": round(events_done - started, 2),
                "recipients_seconds": round(recipients_done - started, 2),
                "events_seconds": round(events_done - recipients_done, 2),
                "incremental_seconds": round(incremental_done - events_done, 2),
                "rate_429": rate_429,
            }
        finally:
            engine.dispose()
            database._engine_for.cache_clear()
            if server is not None:
                server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of requests answered with a bare 429")
    args = parser.parse_args()
    print(json.dumps(run(args.recipients, args.page_size, args.rate_429), indent=2))


if __name__ == "__main__":
    main()
