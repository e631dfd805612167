"""The reconciliation check is partitioned like campaign_totals: it reads its own campaign and nothing else."""

import uuid

import dagster as dg
import pandas as pd

from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.metrics.assets import METRICS_SETTINGS_KEY, MetricsSettings, metrics_asset_checks, metrics_assets
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager
from campaign_pipeline_tests.core.frames import events, recipients, report

PARTITION = {"partition_expr": "campaign_id"}


class RecordingIOManager(PostgresPandasIOManager):
    """The project's IO manager, noting which partitions and columns each step loads."""

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        frame = super().load_input(context)
        LOADS.append((context.op_def.name, context.asset_key.path[-1], tuple(context.asset_partition_keys), len(frame)))
        return frame


LOADS: list[tuple[str, str, tuple[str, ...], int]] = []


def _report(campaign_id: str, drifted: bool) -> pd.DataFrame:
    frame = report(
        campaign_id=campaign_id,
        emails_sent=2,
        unique_opens=1,
        opens_total=1,
        unique_subscriber_clicks=0,
        clicks_total=0,
        hard_bounces=0,
        unsubscribed=0,
        open_rate=0.5,
        click_rate=0.0,
    )
    if drifted:
        frame["unique_opens"] = 2000
    return frame


def _stand_ins(drifting: str) -> list[dg.AssetsDefinition]:
    @dg.asset(name="campaign_recipients", partitions_def=mailchimp_campaigns, metadata=PARTITION)
    def _recipients(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return recipients(("ann@example.com",), ("bob@example.com",), campaign_id=context.partition_key)

    @dg.asset(name="raw_email_events", partitions_def=mailchimp_campaigns, metadata=PARTITION)
    def _events(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return events(("ann@example.com", "open", "2024-03-01 10:00"), campaign_id=context.partition_key)

    @dg.asset(name="mailchimp_campaign_report", partitions_def=mailchimp_campaigns, metadata=PARTITION)
    def _report_asset(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return _report(context.partition_key, drifted=context.partition_key == drifting)

    return [_recipients, _events, _report_asset]


def test_one_campaigns_drift_does_not_fail_the_next_campaigns_check(dagster_instance):
    drifting, clean = f"d{uuid.uuid4().hex[:9]}", f"k{uuid.uuid4().hex[:9]}"
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [drifting, clean])
    assets = [*_stand_ins(drifting), *metrics_assets(SyncProfile()), *metrics_asset_checks]
    resources = {"io_manager": RecordingIOManager(), METRICS_SETTINGS_KEY: MetricsSettings()}
    evaluations = {}
    for campaign_id in (drifting, clean):
        LOADS.clear()
        result = dg.materialize(assets, partition_key=campaign_id, instance=dagster_instance, resources=resources)
        assert result.success
        [evaluations[campaign_id]] = result.get_asset_check_evaluations()
        check_loads = [load for load in LOADS if "totals_match_mailchimp_report" in load[0]]
        # The check loads campaign_totals and the report of its own campaign only: one row each.
        assert sorted(asset for _, asset, _, _ in check_loads) == ["campaign_totals", "mailchimp_campaign_report"]
        assert all(partitions == (campaign_id,) and rows == 1 for _, _, partitions, rows in check_loads)
    assert not evaluations[drifting].passed
    assert evaluations[clean].passed, evaluations[clean].description
    assert evaluations[clean].metadata["campaigns_checked"].value == clean
    assert evaluations[clean].partition == clean


def test_campaign_totals_loads_only_the_member_columns_it_needs(dagster_instance):
    from campaign_pipeline.metrics.assets import TOTALS_MEMBER_COLUMNS, campaign_totals

    [spec] = [i for name, i in campaign_totals.keys_by_input_name.items() if name == "member_statuses"]
    assert spec == dg.AssetKey("member_statuses")
    assert campaign_totals.node_def.input_def_named("member_statuses").metadata["columns"] == TOTALS_MEMBER_COLUMNS
