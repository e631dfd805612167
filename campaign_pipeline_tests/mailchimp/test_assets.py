"""The per-campaign assets materialised by Dagster against the sandbox, on the session's Postgres instance."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.asset_metadata import table_rows
from campaign_pipeline.mailchimp.assets import (
    MAILCHIMP_ASSETS,
    campaign_content,
    campaign_recipients,
    mailchimp_campaign_report,
    raw_email_events,
)
from campaign_pipeline.mailchimp.defs import mailchimp_assets
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.mailchimp_oracle import malformed_records, truth_events, truth_recipients
from campaign_pipeline.sandbox.resources import SANDBOX_SOURCE_MESSAGE, SandboxMailchimpResource
from campaign_pipeline.storage.database import PIPELINE_SCHEMA
from campaign_pipeline.stores import store_resources


@pytest.fixture(autouse=True)
def empty_landing(pg_engine):
    from campaign_pipeline.mailchimp.landing import LandingStore

    LandingStore(pg_engine)
    with pg_engine.begin() as conn:
        for table in (
            "landed_email_events",
            "mailchimp_fetch_cursors",
            "quarantined_records",
            "landed_recipients",
            "landed_campaign_sends",
        ):
            conn.execute(sa.text(f'TRUNCATE "{PIPELINE_SCHEMA}".{table}'))


def materialize(assets, instance, mailchimp, partition_key=None, tags=None):
    return dg.materialize(
        assets,
        instance=instance,
        resources={"mailchimp": mailchimp, "io_manager": dg.mem_io_manager, **store_resources()},
        partition_key=partition_key,
        tags=tags,
    )


def stored(asset: str, *campaign_ids: str) -> pd.DataFrame:
    """What downstream assets load for these campaigns: the landing tables are the asset's storage."""
    from campaign_pipeline.mailchimp.landing import LandingStore

    store = LandingStore()
    return (
        store.raw_email_events(campaign_ids) if asset == "raw_email_events" else store.campaign_recipients(campaign_ids)
    )


def materialization(result: dg.ExecuteInProcessResult, asset: dg.AssetsDefinition) -> dg.AssetMaterialization:
    [event] = [m for m in result.asset_materializations_for_node(asset.op.name)]
    return event


def test_assets_are_partitioned_pooled_and_described():
    for asset in MAILCHIMP_ASSETS:
        [key] = asset.keys
        spec = asset.specs_by_key[key]
        assert asset.partitions_def == mailchimp_campaigns
        assert spec.group_name == "mailchimp"
        assert asset.op.pool == "mailchimp"
        assert spec.description and len(spec.description) > 40
        assert spec.metadata["partition_expr"] == "campaign_id"


def test_campaign_content_only_in_notes_mode():
    assert campaign_content not in mailchimp_assets(SyncProfile(mode="campaign"))
    assert campaign_content in mailchimp_assets(SyncProfile(mode="notes"))
    assert {raw_email_events, campaign_recipients, mailchimp_campaign_report} <= set(
        mailchimp_assets(SyncProfile(mode="campaign_totals"))
    )


def test_raw_email_events_lands_then_adds_only_late_activity(account, mailchimp, dagster_instance):
    campaign_id = account.campaign_ids()[-1]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
    first = materialize([raw_email_events], dagster_instance, mailchimp, campaign_id)
    frame = stored("raw_email_events", campaign_id)
    truth = truth_events(account, campaign_id)
    assert len(frame) == len(truth)
    meta = materialization(first, raw_email_events).metadata
    assert meta["new_events"].value == meta["total_events"].value == len(truth)
    assert meta["quarantined_new"].value == len(malformed_records(account, campaign_id))
    assert {row["reason"] for row in table_rows(meta["quarantined_reasons"])} == {
        "missing action",
        "unparseable timestamp '2026-02-30T25:61:00+00:00'",
        "missing email_address",
    }
    assert meta["api_calls"].value >= meta["pages"].value >= 2
    assert meta["cursor"].value == truth.loc[truth["action"] != "unsubscribe", "timestamp"].max().isoformat()

    account.simulate_late_activity(hours=24)
    late_truth = truth_events(account, campaign_id)
    second = materialize([raw_email_events], dagster_instance, mailchimp, campaign_id)
    meta = materialization(second, raw_email_events).metadata
    assert meta["new_events"].value == len(late_truth) - len(truth)
    assert meta["total_events"].value == len(late_truth) == len(stored("raw_email_events", campaign_id))
    assert meta["quarantined_new"].value == 0


def test_recipients_and_report_for_an_automation_email(account, mailchimp, dagster_instance):
    automation = [c for c in mailchimp.list_sent_campaigns() if c.type == "automation"][0]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [automation.id])
    result = materialize([campaign_recipients, mailchimp_campaign_report], dagster_instance, mailchimp, automation.id)
    recipients = stored("campaign_recipients", automation.id)
    truth = truth_recipients(account, automation.id)
    assert sorted(recipients["email_id"]) == sorted(truth["email_id"])
    assert not recipients["sent_at_is_exact"].any()
    assert materialization(result, campaign_recipients).metadata["sent_at_is_exact"].value is False
    report = result.output_for_node("mailchimp_campaign_report")
    assert report.loc[0, "campaign_type"] == "automation"
    assert report.loc[0, "emails_sent"] == len(truth)
    assert report.loc[0, "hard_bounces"] == (truth["send_status"] == "hard").sum()


def test_recipients_resync_of_a_sent_campaign_costs_one_call(account, mailchimp, dagster_instance):
    regular = next(cid for cid in account.campaign_ids() if not account.spec(cid).is_automation)
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [regular])
    assets = [mailchimp_campaign_report, campaign_recipients]
    first = materialize(assets, dagster_instance, mailchimp, regular)
    second = materialize(assets, dagster_instance, mailchimp, regular)
    first_meta = materialization(first, campaign_recipients).metadata
    second_meta = materialization(second, campaign_recipients).metadata
    assert first_meta["sent_to_fetched"].value == 1 and first_meta["api_calls"].value > 1
    # The report is fetched once per run, by its own asset; recipients read it from there.
    assert materialization(second, mailchimp_campaign_report).metadata["api_calls"].value == 1
    assert second_meta["sent_to_fetched"].value == 0 and second_meta["api_calls"].value == 0
    assert len(stored("campaign_recipients", regular)) == len(truth_recipients(account, regular))


def test_campaign_content_is_the_sent_html(account, mailchimp, dagster_instance):
    campaign_id = account.campaign_ids()[0]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
    result = materialize([campaign_content], dagster_instance, mailchimp, campaign_id)
    content = result.output_for_node("campaign_content")
    assert content["campaign_id"].tolist() == [campaign_id]
    assert content.loc[0, "html"].startswith("<!doctype html>")


def test_a_batched_backfill_run_covers_several_campaigns(account, mailchimp, dagster_instance):
    campaign_ids = account.campaign_ids()[:3]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, campaign_ids)
    materialize(
        [raw_email_events],
        dagster_instance,
        mailchimp,
        tags={
            "dagster/asset_partition_range_start": campaign_ids[0],
            "dagster/asset_partition_range_end": campaign_ids[-1],
        },
    )
    frame = stored("raw_email_events", *campaign_ids)
    assert sorted(frame["campaign_id"].unique()) == sorted(campaign_ids)
    assert len(frame) == sum(len(truth_events(account, cid)) for cid in campaign_ids)


def test_without_a_key_the_source_is_the_sandbox_and_says_so(tmp_path, dagster_instance, monkeypatch):
    monkeypatch.delenv("MAILCHIMP_API_KEY", raising=False)
    state_path = tmp_path / "fallback_state.json"
    fallback = SandboxMailchimpResource(sandbox_state_path=str(state_path), sandbox_members=600, sandbox_seed=5)
    assert fallback.uses_sandbox
    mirror = SandboxAccount(seed=5, n_members=600, state_path=state_path)
    campaign_id = mirror.campaign_ids()[-1]
    assert fallback.now() == pd.Timestamp(mirror.now)
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
    result = materialize([mailchimp_campaign_report], dagster_instance, fallback, campaign_id)
    meta = materialization(result, mailchimp_campaign_report).metadata
    assert meta["mailchimp_source"].value == SANDBOX_SOURCE_MESSAGE
    assert state_path.exists()
    logged = [entry.user_message for entry in dagster_instance.all_logs(result.run_id)]
    assert SANDBOX_SOURCE_MESSAGE in logged
