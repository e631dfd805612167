"""Mode activity from the Mailchimp sandbox to the Salesforce sandbox org: every asset of the mode's Definitions."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from campaign_pipeline.definitions import build_definitions
from campaign_pipeline.mailchimp.landing import LandingStore
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.resources import SandboxMailchimpResource, SandboxSalesforceResource

pytestmark = pytest.mark.slow


def test_activity_mode_from_mailchimp_sandbox_to_salesforce_sandbox(dagster_instance, pg_engine: sa.Engine) -> None:
    profile = SyncProfile.model_validate(
        {
            "mode": "activity",
            "field_mapping": {"task_url_field": "Clicked_URL__c", "task_key_field": "Mailchimp_Event_Id__c"},
        }
    )
    definitions = build_definitions(profile)
    salesforce = SandboxSalesforceResource(sandbox_schema=f"activity_full_{uuid.uuid4().hex[:8]}", backoff_seconds=0.0)
    resources = {**definitions.resources, "mailchimp": SandboxMailchimpResource(), "salesforce": salesforce}
    campaign_id = SandboxAccount().campaign_ids()[0]
    ledger = SyncLedger(pg_engine)
    with pg_engine.begin() as conn:
        # The session's ledger may know this sandbox campaign from another test's org; this org starts empty.
        conn.execute(sa.text(f"DELETE FROM {ledger._qualified} WHERE campaign_id = :c"), {"c": campaign_id})
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
    assets = list(definitions.assets)

    def materialize() -> dg.ExecuteInProcessResult:
        return dg.materialize(assets, partition_key=campaign_id, instance=dagster_instance, resources=resources)

    first = materialize()
    assert first.success
    events = LandingStore(pg_engine).raw_email_events([campaign_id])
    matches = first.output_for_node("salesforce_matches", "salesforce_matches")
    tasks = first.output_for_node("sf_tasks")
    matched = events[events["email_id"].isin(matches["email_id"]) & events["action"].isin(["open", "click"])]
    assert len(tasks) == len(matched) > 0
    assert set(tasks["sync_key"]) == set(matched["event_id"])
    sync_meta = {
        k: getattr(v, "value", v)
        for k, v in first.asset_materializations_for_node("salesforce_sync")[0].metadata.items()
    }
    assert sync_meta["failed"] == 0 and sync_meta["created"] == len(tasks)

    second = materialize()
    again = {
        k: getattr(v, "value", v)
        for k, v in second.asset_materializations_for_node("salesforce_sync")[0].metadata.items()
    }
    # The keyless sandbox follows the wall clock, so a little late activity may land between the runs: exactly its
    # Tasks are new, nothing else is written.
    new_tasks = len(second.output_for_node("sf_tasks")) - len(tasks)
    assert (again["created"], again["updated"], again["unchanged"]) == (new_tasks, 0, len(tasks))
    if new_tasks == 0:
        assert again["write_calls"] == 0
