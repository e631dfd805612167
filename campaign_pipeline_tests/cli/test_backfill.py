"""`campaign-pipeline backfill --since`: older campaigns of the sandbox account as partitions and one batched backfill."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner
from dagster._core.execution.backfill import BulkActionStatus

from campaign_pipeline.cli import main
from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.mailchimp.ownership import PartitionOwners
from campaign_pipeline.mailchimp.sensors import sent_campaign_key
from campaign_pipeline.storage import database
from campaign_pipeline_tests.conftest import isolated_dagster_home

REPO_ROOT = Path(__file__).resolve().parents[2]
LIVE_SOURCE = "mailchimp:acct-live-1"


@pytest.fixture
def sandbox_home(fresh_database_url, tmp_path, monkeypatch) -> dg.DagsterInstance:
    """The CLI on a fresh database and Dagster instance, reading the sandbox account (no credentials)."""
    for name in list(os.environ):
        if name.startswith(("MAILCHIMP_", "SALESFORCE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    monkeypatch.setenv(database.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(isolated_dagster_home(tmp_path, REPO_ROOT)))
    with dg.DagsterInstance.get() as instance:
        yield instance


def sandbox_sends():
    from campaign_pipeline.deployment import choose_deployment

    sends = choose_deployment().mailchimp.list_sent_campaigns()
    return sorted((c for c in sends if c.send_time is not None), key=lambda c: (c.send_time, c.id))


def backfill(*args: str) -> dict:
    result = CliRunner().invoke(main, ["backfill", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def target_keys(instance: dg.DagsterInstance, backfill_id: str) -> list[str]:
    data = instance.get_backfill(backfill_id).asset_backfill_data
    return sorted(data.target_subset.get_partitions_subset(dg.AssetKey("salesforce_sync")).get_partition_keys())


def test_backfill_since_adds_partitions_and_one_backfill_within_the_limit(sandbox_home):
    instance = sandbox_home
    sends = sandbox_sends()
    assert len(sends) >= 5
    since = sends[1].send_time.strftime("%Y-%m-%d")
    in_range = [c for c in sends if c.send_time >= pd.Timestamp(since, tz="UTC")]
    keys = [sent_campaign_key(c) for c in in_range]

    preview = backfill("--since", since, "--preview")
    assert [item["partition_key"] for item in preview["queued"]] == keys
    assert preview["backfill_id"] is None and not preview["partitions_added"]
    assert instance.get_dynamic_partitions("mailchimp_campaigns") == []
    assert instance.get_backfills() == []

    first = backfill("--since", since, "--limit", "2")
    assert [item["partition_key"] for item in first["queued"]] == keys[:2]
    assert first["over_limit"] == len(keys) - 2 and first["runs"] == 1
    assert instance.get_dynamic_partitions("mailchimp_campaigns") == keys[:2]  # oldest first
    [made] = instance.get_backfills()
    assert made.backfill_id == first["backfill_id"] and made.status == BulkActionStatus.REQUESTED
    assert made.title == f"Mailchimp history since {since}"
    assert target_keys(instance, made.backfill_id) == keys[:2]
    # Every per-campaign asset is in it, so the daemon's runs sync the campaigns end to end.
    assert {dg.AssetKey("raw_email_events"), dg.AssetKey("salesforce_sync")} <= set(made.asset_selection)
    assert PartitionOwners(database.get_engine()).owners([c.id for c in in_range]) == {
        c.id: "mailchimp:sandbox" for c in in_range[:2]
    }

    # The first two are in an unfinished backfill: the next run queues the next two, not them again.
    second = backfill("--since", since, "--limit", "2")
    assert [item["partition_key"] for item in second["queued"]] == keys[2:4]
    assert second["already_queued"] == [c.id for c in in_range[:2]]
    assert target_keys(instance, second["backfill_id"]) == keys[2:4]
    assert len(instance.get_backfills()) == 2


def test_synced_and_foreign_campaigns_are_left_out_unless_resync(sandbox_home):
    instance = sandbox_home
    sends = sandbox_sends()
    since = sends[0].send_time.strftime("%Y-%m-%d")
    synced, foreign = sends[0], sends[1]
    # Synced under its bare key of before: it is the campaign id that counts.
    instance.add_dynamic_partitions("mailchimp_campaigns", [synced.id])
    instance.report_runless_asset_event(dg.AssetMaterialization("salesforce_sync", partition=synced.id))
    PartitionOwners(database.get_engine()).record([foreign.id], LIVE_SOURCE)

    plan = backfill("--since", since, "--limit", "1")
    assert plan["already_synced"] == [synced.id] and plan["other_account"] == [foreign.id]
    assert [campaign_id_from_key(item["partition_key"]) for item in plan["queued"]] == [sends[2].id]
    instance.update_backfill(instance.get_backfill(plan["backfill_id"]).with_status(BulkActionStatus.CANCELED))

    again = backfill("--since", since, "--limit", "1", "--resync")
    # The existing partition is reused (no second one for the campaign), and the foreign one is never queued.
    assert [item["partition_key"] for item in again["queued"]] == [synced.id]
    assert again["partitions_added"] == [] and again["other_account"] == [foreign.id]


def test_backfill_refuses_a_bad_date_or_limit(sandbox_home):
    assert CliRunner().invoke(main, ["backfill", "--since", "July"]).exit_code == 2
    assert CliRunner().invoke(main, ["backfill", "--since", "2026-07-01", "--limit", "0"]).exit_code == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_daemon_runs_the_backfill_as_one_batched_run_per_twenty_campaigns(sandbox_home):
    """What `dagster dev` does with the queued backfill: one run over the campaigns' partition range (the backfill
    policy batches up to 20), which syncs each of them under its own dated key."""
    import subprocess
    import sys
    import time

    instance = sandbox_home
    sends = sandbox_sends()
    plan = backfill("--since", sends[0].send_time.strftime("%Y-%m-%d"), "--limit", "3")
    keys = [item["partition_key"] for item in plan["queued"]]
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 780
        while instance.get_backfill(plan["backfill_id"]).status == BulkActionStatus.REQUESTED:
            assert time.monotonic() < deadline, "the daemon did not finish the backfill"
            time.sleep(2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert instance.get_backfill(plan["backfill_id"]).status == BulkActionStatus.COMPLETED_SUCCESS
    [run] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": plan["backfill_id"]}))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
        keys[0],
        keys[-1],
    )
    assert set(keys) <= instance.get_materialized_partitions(dg.AssetKey("salesforce_sync"))
