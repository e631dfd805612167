"""One run over three campaign partitions, every asset of the mode from the Mailchimp sandbox to the Salesforce
sandbox org: each partition's materialization, read back from the Dagster instance's event log, carries that
campaign's own counts, checked against the landing tables, the asset tables and the sync ledger."""

from __future__ import annotations

import uuid

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.definitions import build_definitions
from campaign_pipeline.mailchimp.landing import LandingStore
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.mailchimp.sensors import sent_campaign_key
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.ledger import LEDGER_TABLE
from campaign_pipeline.sandbox.resources import SandboxMailchimpResource, SandboxSalesforceResource
from campaign_pipeline.storage.frames import read_frame
from campaign_pipeline.storage.io_manager import table_for
from campaign_pipeline.stores import SYNC_LEDGER_KEY, SyncLedgerResource
from campaign_pipeline_tests.metadata import readable

pytestmark = pytest.mark.slow

# A seed no other test's sandbox uses: its campaign ids are this test's alone in the shared landing tables.
SEED = 41
MEMBERS = 600
PROFILES = {
    "campaign": {},
    "activity": {
        "mode": "activity",
        "field_mapping": {"task_url_field": "Clicked_URL__c", "task_key_field": "Mailchimp_Event_Id__c"},
    },
}


def _latest(instance: dg.DagsterInstance, asset: str, partition: str) -> dict:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return readable(dict(record.asset_materialization.metadata))  # type: ignore[union-attr]


def _ledger_counts(engine: sa.Engine, schema: str) -> pd.DataFrame:
    """Ledger rows per campaign and kind."""
    with engine.connect() as conn:
        return pd.read_sql(
            sa.text(
                f'SELECT campaign_id, object_kind, count(*) AS rows FROM "{schema}"."{LEDGER_TABLE}" '
                "GROUP BY campaign_id, object_kind"
            ),
            conn,
        )


@pytest.mark.parametrize("mode", list(PROFILES))
def test_each_partition_of_a_batched_run_shows_its_own_numbers(mode, dagster_instance, pg_engine, tmp_path) -> None:
    profile = SyncProfile.model_validate(PROFILES[mode])
    definitions = build_definitions(profile)
    mailchimp = SandboxMailchimpResource(
        sandbox_state_path=str(tmp_path / "mailchimp_state.json"), sandbox_members=MEMBERS, sandbox_seed=SEED
    )
    salesforce = SandboxSalesforceResource(
        sandbox_schema=f"sf_parts_{uuid.uuid4().hex[:8]}", sandbox_seed=SEED, backoff_seconds=0.0
    )
    ledger_schema = f"ledger_{uuid.uuid4().hex[:8]}"
    sends = sorted(
        (c for c in mailchimp.list_sent_campaigns() if c.send_time is not None and c.type == "regular"),
        key=lambda c: (c.send_time, c.id),
    )[:3]
    key_of = {c.id: sent_campaign_key(c) for c in sends}
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, list(key_of.values()))
    result = dg.materialize(
        list(definitions.assets),
        instance=dagster_instance,
        resources={
            **definitions.resources,
            "mailchimp": mailchimp,
            "salesforce": salesforce,
            SYNC_LEDGER_KEY: SyncLedgerResource(schema_name=ledger_schema),
        },
        tags={
            "dagster/asset_partition_range_start": key_of[sends[0].id],
            "dagster/asset_partition_range_end": key_of[sends[-1].id],
        },
    )
    assert result.success
    # One run, one step per asset: every materialization below came from the same batched step.
    assert len({m.partition for m in result.asset_materializations_for_node("salesforce_sync")}) == 3

    landing = LandingStore(pg_engine)
    ledger = _ledger_counts(pg_engine, ledger_schema)
    matches = result.output_for_node("salesforce_matches", "salesforce_matches")
    seen: dict[str, list[int]] = {}
    for campaign_id, key in key_of.items():

        def own(asset: str, key: str = key) -> dict:
            metadata = _latest(dagster_instance, asset, key)
            assert metadata["campaigns_in_run"] == 3, asset
            return metadata

        events = landing.raw_email_events([campaign_id])
        landed = own("raw_email_events")
        assert landed["total_events"] == landed["dagster/row_count"] == len(events) > 0
        assert {row["action"]: row["count"] for row in landed["actions"]} == events["action"].value_counts().to_dict()
        assert landed["cursor"] != "none" and landed["api_calls"] >= 1

        recipients = own("campaign_recipients")
        assert recipients["dagster/row_count"] == len(landing.campaign_recipients([campaign_id]))
        # Sent-to is read once (the second mode finds it landed in full): the calls are this campaign's own.
        assert (recipients["api_calls"] > 0) == (recipients["sent_to_fetched"] == 1)

        statuses = read_frame(pg_engine, table_for(dg.AssetKey("member_statuses")), [campaign_id])
        assert own("member_statuses")["stored_rows"] == own("member_statuses")["dagster/row_count"] == len(statuses)

        own_matches = matches[matches["campaign_id"] == campaign_id]
        matched = own("salesforce_matches")
        assert matched["matched"] == matched["stored_rows"] == len(own_matches) > 0
        assert matched["contacts"] + matched["leads"] == len(own_matches)
        assert own("unmatched_members")["unmatched"] == len(statuses) - len(own_matches)

        rows = ledger[ledger["campaign_id"] == campaign_id].set_index("object_kind")["rows"]
        sync = own("salesforce_sync")
        # The ledger rows salesforce_sync stored for this campaign, and what it wrote, are the campaign's own (a new
        # Campaign's own Sent status is adopted unchanged, not created).
        assert sync["stored_rows"] == sync["desired"] == int(rows.sum())
        assert sync["created"] + sync["updated"] + sync["unchanged"] == sync["desired"] and sync["created"] > 0
        assert sync["failed"] == 0 and sync["api_calls_are"]
        if mode == "activity":
            tasks = own("sf_tasks")
            assert tasks["tasks"] == tasks["stored_rows"] == int(rows["task"]) == sync["per_kind"]["task"]["created"]
            assert tasks["matched_people"] <= len(own_matches)
            seen.setdefault("tasks", []).append(tasks["tasks"])
        else:
            members = own("sf_campaign_members")
            assert members["members"] == int(rows["campaign_member"]) == len(own_matches)
            assert own("sf_campaign")["campaigns"] == int(rows["campaign"]) == 1
        seen.setdefault("events", []).append(landed["total_events"])
        seen.setdefault("stored_rows", []).append(sync["stored_rows"])
    # The sandbox's campaigns differ in size: the same number on every partition would be the batch's.
    assert all(len(set(numbers)) > 1 for numbers in seen.values()), seen
