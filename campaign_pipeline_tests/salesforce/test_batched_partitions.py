"""A run over several campaign partitions (a batched backfill): each partition's materialization and check say
that campaign's own numbers, and a preview of the batch changes nothing and says what the real batch writes."""

import uuid
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest

from campaign_pipeline.core.campaign_keys import campaign_id_from_key, campaign_partition_key
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.defs import salesforce_assets
from campaign_pipeline.salesforce.sync_metadata import PREVIEW_TAG
from campaign_pipeline.sandbox.resources import SandboxSalesforceResource
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager
from campaign_pipeline.stores import SYNC_LEDGER_KEY, SyncLedgerResource, store_resources
from campaign_pipeline_tests.metadata import readable

from .frames import campaign_report, campaign_totals, member_statuses

PARTITION = {"partition_expr": "campaign_id"}
# Too long for Campaign.Name (80): with field_limit_policy reject, that campaign's Campaign fails, and so its members.
LONG_TITLE = "A campaign title far longer than the eighty characters Salesforce allows in Campaign.Name"


def _stand_ins(statuses: pd.DataFrame, reports: pd.DataFrame) -> list[dg.AssetsDefinition]:
    """Upstream assets answering the run's partitions from fixed frames, as a batched run reads them."""

    def of_run(frame: pd.DataFrame, context: dg.AssetExecutionContext) -> pd.DataFrame:
        campaigns = [campaign_id_from_key(key) for key in context.partition_keys]
        return frame[frame["campaign_id"].isin(campaigns)].reset_index(drop=True)

    @dg.asset(name="member_statuses", partitions_def=mailchimp_campaigns, metadata=PARTITION)
    def statuses_stand_in(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return of_run(statuses, context)

    @dg.asset(name="campaign_totals", partitions_def=mailchimp_campaigns, metadata=PARTITION)
    def totals_stand_in(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return campaign_totals(of_run(statuses, context))

    @dg.asset(name="mailchimp_campaign_report", partitions_def=mailchimp_campaigns, metadata=PARTITION)
    def report_stand_in(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return of_run(reports, context)

    return [statuses_stand_in, totals_stand_in, report_stand_in]


def _latest(instance: dg.DagsterInstance, partition: str, asset: str = "salesforce_sync") -> dict:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return readable(dict(record.asset_materialization.metadata))  # type: ignore[union-attr]


@pytest.mark.slow
def test_each_partition_of_a_batched_run_carries_its_own_counts_changes_and_check(pg_url, dagster_instance) -> None:
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

    resource = SandboxSalesforceResource(sandbox_schema=f"sf_batch_{uuid.uuid4().hex[:8]}", backoff_seconds=0.0)
    ledger = SyncLedgerResource(schema_name=f"ledger_{uuid.uuid4().hex[:8]}")
    audience = SandboxAccount(seed=resource.sandbox_seed).audience_emails()
    small, large, refused = (f"{name}{uuid.uuid4().hex[:6]}" for name in ("small", "large", "refused"))
    sizes = {small: 4, large: 30, refused: 6}
    statuses = pd.concat(
        [member_statuses(campaign, dict.fromkeys(audience[:size], "Opened")) for campaign, size in sizes.items()],
        ignore_index=True,
    )
    reports = pd.concat(
        [campaign_report(small), campaign_report(large), campaign_report(refused, title=LONG_TITLE)],
        ignore_index=True,
    )
    profile = SyncProfile.model_validate({"sync": {"field_limit_policy": "reject"}})
    # Partition keys as the sensor makes them (send date, title, campaign id); every store keys on the campaign id.
    key_of = {
        campaign: campaign_partition_key(datetime(2026, 11, day, tzinfo=UTC), "Spring offer", campaign)
        for day, campaign in enumerate(sizes, start=1)
    }
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, list(key_of.values()))
    assets = [*_stand_ins(statuses, reports), *salesforce_assets(profile)]
    batch = {"dagster/asset_partition_range_start": key_of[small], "dagster/asset_partition_range_end": key_of[refused]}

    def run(**tags: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            assets,
            instance=dagster_instance,
            tags={**batch, **tags},
            resources={
                "io_manager": PostgresPandasIOManager(),
                "salesforce": resource,
                **store_resources(),
                SYNC_LEDGER_KEY: ledger,
            },
        )

    def org_counts() -> dict[str, int]:
        with SalesforceSandbox(schema=resource.sandbox_schema) as org:
            return {sobject: len(org.records(sobject)) for sobject in ("Campaign", "CampaignMember")}

    preview = run(**{PREVIEW_TAG: "true"})
    assert preview.success
    assert ledger.open().load("campaign_member", list(sizes)).empty
    assert org_counts() == {"Campaign": 0, "CampaignMember": 0}
    planned = {campaign: _latest(dagster_instance, key_of[campaign]) for campaign in sizes}

    real = run()
    assert real.success
    matched = real.output_for_node("salesforce_matches", "salesforce_matches").groupby("campaign_id").size()
    for campaign in sizes:
        own = _latest(dagster_instance, key_of[campaign])
        assert own["campaigns_in_run"] == 3
        # The batch's numbers are never recorded on a partition: each says its own campaign's.
        assert own["desired"] == 1 + 5 + matched[campaign]
        if campaign == refused:
            assert own["created"] == 0 and own["failed"] == 1 + 5 + matched[campaign]
            assert "FIELD_LIMIT" in own["failures"] and "PARENT_NOT_SYNCED" in own["failures"]
            assert f"{campaign}\\|status\\|Sent" in own["failures"]  # keys with | keep the Markdown columns
        else:
            assert own["created"] == 1 + 4 + matched[campaign] and own["failed"] == 0 and "failures" not in own
            assert own["per_kind"]["campaign_member"]["created"] == matched[campaign]
        assert all(row["sync_key"].startswith(campaign) for row in own.get("changes", []))
        # The desired-record assets of the batch say each campaign's own rows too.
        members = _latest(dagster_instance, key_of[campaign], "sf_campaign_members")
        assert members["members"] == matched[campaign]
        assert sum(row["count"] for row in members["status_breakdown"]) == matched[campaign]
        assert _latest(dagster_instance, key_of[campaign], "sf_campaign")["campaigns"] == 1
        said = planned[campaign]
        assert (said["would_create"], said["would_update"], said["would_skip"], said["would_fail"]) == (
            own["created"],
            own["updated"],
            own["unchanged"],
            own["failed"],
        )
    checks = {evaluation.partition: evaluation for evaluation in real.get_asset_check_evaluations()}
    assert set(checks) == set(key_of.values())
    assert {key for key, evaluation in checks.items() if not evaluation.passed} == {key_of[refused]}
    assert checks[key_of[refused]].metadata["failed"].value == 1 + 5 + matched[refused]
    assert all(evaluation.target_materialization_data is not None for evaluation in checks.values())
