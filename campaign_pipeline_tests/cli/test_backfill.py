"""`campaign-pipeline backfill --since`: older campaigns of the sandbox account as partitions and one batched backfill."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from dagster._core.execution.backfill import BulkActionStatus

from campaign_pipeline.cli import main
from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.mailchimp.ownership import PartitionOwners
from campaign_pipeline.mailchimp.sensors import sent_campaign_key
from campaign_pipeline.salesforce.sync_metadata import PREVIEW_TAG
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

    listed = backfill("--since", since, "--list")
    assert [item["partition_key"] for item in listed["queued"]] == keys
    assert listed["list_only"] and not listed["preview"]
    assert listed["backfill_id"] is None and not listed["partitions_added"]
    assert instance.get_dynamic_partitions("mailchimp_campaigns") == []
    assert instance.get_backfills() == []
    assert PartitionOwners(database.get_engine()).owners([c.id for c in in_range]) == {}

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
    both = CliRunner().invoke(main, ["backfill", "--since", "2026-07-01", "--list", "--preview"])
    assert both.exit_code == 2 and "pick one" in both.output


def test_preview_queues_the_backfill_as_dry_runs_that_hold_no_campaign_back(sandbox_home):
    instance = sandbox_home
    sends = sandbox_sends()
    since = sends[0].send_time.strftime("%Y-%m-%d")
    keys = [sent_campaign_key(c) for c in sends[:2]]

    dry = backfill("--since", since, "--limit", "2", "--preview")
    assert dry["preview"] and [item["partition_key"] for item in dry["queued"]] == keys
    # The runs need their partitions; the backfill's tags are what the daemon gives each of its runs.
    assert instance.get_dynamic_partitions("mailchimp_campaigns") == keys
    made = instance.get_backfill(dry["backfill_id"])
    assert made.tags[PREVIEW_TAG] == "true" and made.title.startswith("Dry run: ")
    assert target_keys(instance, made.backfill_id) == keys

    # A campaign only previewed (its salesforce_sync materialized by a dry run) is neither queued nor synced.
    instance.report_runless_asset_event(
        dg.AssetMaterialization("salesforce_sync", partition=keys[0], metadata={"would_create": 12, "desired": 12})
    )
    real = backfill("--since", since, "--limit", "2")
    assert [item["partition_key"] for item in real["queued"]] == keys
    assert real["already_queued"] == [] and real["already_synced"] == [] and real["partitions_added"] == []
    assert PREVIEW_TAG not in instance.get_backfill(real["backfill_id"]).tags

    # The unfinished real backfill holds both back; once it is over, a campaign a real run materialized is synced.
    held = backfill("--since", since, "--limit", "2", "--list")
    assert held["already_queued"] == [c.id for c in sends[:2]]
    instance.update_backfill(instance.get_backfill(real["backfill_id"]).with_status(BulkActionStatus.CANCELED))
    instance.report_runless_asset_event(
        dg.AssetMaterialization("salesforce_sync", partition=keys[0], metadata={"created": 12, "desired": 12})
    )
    after = backfill("--since", since, "--limit", "1", "--list")
    assert after["already_synced"] == [sends[0].id] and after["already_queued"] == []
    assert [item["partition_key"] for item in after["queued"]] == [keys[1]]


def test_backfill_targets_a_named_profile_instance_and_a_wrong_name_gets_the_closest(
    sandbox_home, tmp_path, monkeypatch
):
    from campaign_pipeline.definitions import deployment_profiles, instance_partitions_name
    from campaign_pipeline.deployment import choose_deployment
    from campaign_pipeline.history import UnknownInstance, backfill_history, choose_target
    from campaign_pipeline_tests.components.test_campaign_sync import (
        CAMPAIGN_PROFILE,
        NOTES_PROFILE,
        package_name,
        write_project,
    )

    instance = sandbox_home
    root = tmp_path / "project"
    write_project(root, {"members": CAMPAIGN_PROFILE, "notes": NOTES_PROFILE})
    monkeypatch.syspath_prepend(str(root))
    loaded, profiles = deployment_profiles(root / package_name(root))
    assert set(profiles) == {"newsletter_members", "newsletter_notes"}
    with pytest.raises(
        UnknownInstance, match="did you mean 'newsletter_members'.*newsletter_members, newsletter_notes"
    ):
        choose_target(profiles, "newsletter_member")
    with pytest.raises(UnknownInstance, match="no default sync profile.*--instance"):
        choose_target(profiles, None)

    target, profile = choose_target(profiles, "newsletter_notes")
    assert profile.mode == "notes"
    sends = sandbox_sends()
    plan = backfill_history(
        sends[0].send_time.date(),
        limit=2,
        instance=instance,
        profile=profile,
        mailchimp=choose_deployment().mailchimp,
        defs=loaded,
        target=target,
    )
    keys = [sent_campaign_key(c) for c in sends[:2]]
    assert plan.instance == "newsletter_notes" and [item["partition_key"] for item in plan.queued] == keys
    assert instance.get_dynamic_partitions(instance_partitions_name("newsletter_notes")) == keys
    # The other profiles' partitions are untouched, and the backfill selects only this profile's assets.
    assert instance.get_dynamic_partitions(instance_partitions_name("newsletter_members")) == []
    assert instance.get_dynamic_partitions("mailchimp_campaigns") == []
    made = instance.get_backfill(plan.backfill_id)
    assert {key.path[0] for key in made.asset_selection} == {"newsletter_notes"}
    assert dg.AssetKey(["newsletter_notes", "sf_notes"]) in made.asset_selection
    data = made.asset_backfill_data
    assert data is not None
    synced = data.target_subset.get_partitions_subset(dg.AssetKey(["newsletter_notes", "salesforce_sync"]))
    assert sorted(synced.get_partition_keys()) == keys
    assert "newsletter_notes" in made.title


def test_a_wrong_instance_name_lists_the_available_ones(sandbox_home):
    result = CliRunner().invoke(main, ["backfill", "--since", "2026-07-01", "--instance", "newsletter", "--list"])
    assert result.exit_code == 2
    assert "no sync profile instance named 'newsletter'" in result.output
    assert "leave --instance out for the default profile" in result.output
    assert "Traceback" not in result.output


def run_daemon_until_done(instance: dg.DagsterInstance, backfill_id: str, timeout: float = 780) -> None:
    """What `dagster dev` does with a queued backfill: its daemon launches the runs, until the backfill is over."""
    import subprocess
    import sys
    import time

    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while instance.get_backfill(backfill_id).status == BulkActionStatus.REQUESTED:
            assert time.monotonic() < deadline, "the daemon did not finish the backfill"
            time.sleep(2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_daemon_runs_the_backfill_as_one_batched_run_per_twenty_campaigns(sandbox_home):
    """What `dagster dev` does with the queued backfill: one run over the campaigns' partition range (the backfill
    policy batches up to 20), which syncs each of them under its own dated key."""
    instance = sandbox_home
    sends = sandbox_sends()
    plan = backfill("--since", sends[0].send_time.strftime("%Y-%m-%d"), "--limit", "3")
    keys = [item["partition_key"] for item in plan["queued"]]
    run_daemon_until_done(instance, plan["backfill_id"])
    [run] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": plan["backfill_id"]}))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
        keys[0],
        keys[-1],
    )
    assert set(keys) <= instance.get_materialized_partitions(dg.AssetKey("salesforce_sync"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_preview_backfill_runs_as_dry_runs_that_write_nothing(sandbox_home):
    """`backfill --preview`: the daemon's runs carry the preview tag, say what they would create, and write
    nothing to the org or the ledger; the campaign is still to be synced afterwards."""
    from campaign_pipeline.salesforce.ledger import LEDGER_TABLE
    from campaign_pipeline.sandbox.resources import SandboxSalesforceResource

    def rows(schema: str, table: str, where: str = "") -> int:
        """Rows of a table, 0 when no run has made it yet."""
        if not sa.inspect(engine).has_table(table, schema=schema):
            return 0
        with engine.connect() as conn:
            return conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{table}" {where}')).scalar_one()

    instance = sandbox_home
    engine = database.get_engine()
    sends = sandbox_sends()
    since = sends[0].send_time.strftime("%Y-%m-%d")
    org_schema = SandboxSalesforceResource().sandbox_schema
    campaigns_only = "WHERE sobject IN ('Campaign', 'CampaignMemberStatus', 'CampaignMember')"
    org_before = rows(org_schema, "records", campaigns_only)
    plan = backfill("--since", since, "--limit", "1", "--preview")
    [key] = [item["partition_key"] for item in plan["queued"]]
    run_daemon_until_done(instance, plan["backfill_id"])

    [run] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": plan["backfill_id"]}))
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags[PREVIEW_TAG] == "true"
    [event] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("salesforce_sync"), asset_partitions=[key]), limit=1
    ).records
    metadata = event.asset_materialization.metadata
    assert event.run_id == run.run_id and metadata["would_create"].value > 0 and "created" not in metadata
    assert rows(database.PIPELINE_SCHEMA, LEDGER_TABLE) == 0
    assert rows(org_schema, "records", campaigns_only) == org_before
    # Only previewed: the next real backfill queues it.
    again = backfill("--since", since, "--limit", "1", "--list")
    assert [item["partition_key"] for item in again["queued"]] == [key] and again["already_synced"] == []
