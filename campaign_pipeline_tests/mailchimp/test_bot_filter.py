"""Bot filtering end to end: the real client sends Mailchimp's `filter_bots`, and the landed events lose the proxy opens."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.mailchimp.assets import campaign_recipients, mailchimp_campaign_report, raw_email_events
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.metrics.assets import METRICS_SETTINGS_KEY, MetricsSettings, metrics_asset_checks, metrics_assets
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.mailchimp_oracle import truth_events
from campaign_pipeline.storage.database import PIPELINE_SCHEMA
from campaign_pipeline.stores import store_resources
from campaign_pipeline_tests.mailchimp.conftest import resource_on
from campaign_pipeline_tests.mailchimp.test_resource import comparable, fetched_events


@pytest.fixture(autouse=True)
def empty_landing(pg_engine):
    from campaign_pipeline.mailchimp.landing import LandingStore

    LandingStore(pg_engine)
    with pg_engine.begin() as conn:
        for table in ("landed_email_events", "mailchimp_fetch_cursors", "quarantined_records", "landed_recipients"):
            conn.execute(sa.text(f'TRUNCATE "{PIPELINE_SCHEMA}".{table}'))


def test_filtered_fetch_equals_the_truth_without_privacy_proxy_opens(account, sandbox):
    campaign_id = account.campaign_ids()[0]
    unfiltered = fetched_events(resource_on(sandbox), campaign_id)
    filtered = fetched_events(resource_on(sandbox, filter_bots=True), campaign_id)
    truth = truth_events(account, campaign_id, filter_bots=True)
    pd.testing.assert_frame_equal(comparable(filtered), comparable(truth), check_dtype=False)
    # The filter has an effect: the sandbox's proxy opens are a tenth of the delivered, so hundreds here.
    proxy_opens = len(unfiltered) - len(filtered)
    assert proxy_opens > 20
    assert len(unfiltered) == len(truth_events(account, campaign_id))
    queries = [query for _, path, query, _ in sandbox.request_log if "email-activity" in path]
    assert any(query.get("filter_bots") == "true" for query in queries)
    assert not any("activity_filter_bots" in query for query in queries)


def test_profile_setting_reaches_the_resource():
    from campaign_pipeline.definitions import build_definitions

    for filter_bots in (True, False):
        definitions = build_definitions(SyncProfile(mailchimp={"filter_bots": filter_bots}))
        assert definitions.resources["mailchimp"].filter_bots is filter_bots


@pytest.mark.slow
def test_filtered_events_show_what_was_left_out_and_still_reconcile(account, sandbox, dagster_instance, pg_engine):
    mailchimp = resource_on(sandbox, filter_bots=True)
    campaign_id = account.campaign_ids()[0]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
    result = dg.materialize(
        [
            raw_email_events,
            campaign_recipients,
            mailchimp_campaign_report,
            *metrics_assets(SyncProfile()),
            *metrics_asset_checks,
        ],
        instance=dagster_instance,
        partition_key=campaign_id,
        resources={
            "mailchimp": mailchimp,
            "io_manager": dg.mem_io_manager,
            METRICS_SETTINGS_KEY: MetricsSettings(),
            **store_resources(),
        },
    )
    [events_materialization] = result.asset_materializations_for_node("raw_email_events")
    metadata = events_materialization.metadata
    all_events, human_events = truth_events(account, campaign_id), truth_events(account, campaign_id, filter_bots=True)
    assert metadata["bot_filter"].value.startswith("on")
    assert metadata["events_filtered"].value == len(all_events) - len(human_events) > 0
    # The landing table is raw_email_events' storage: what downstream assets load for this campaign.
    from campaign_pipeline.mailchimp.landing import LandingStore

    assert len(LandingStore(pg_engine).raw_email_events([campaign_id])) == len(human_events)
    [report_materialization] = result.asset_materializations_for_node("mailchimp_campaign_report")
    assert report_materialization.metadata["opens_counted"].value.startswith("human only")
    # Computed opens have no proxy opens; so do the report figures they are checked against.
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.metadata["differences"].value
    totals = result.asset_value("campaign_totals").iloc[0]
    report = result.asset_value("mailchimp_campaign_report").iloc[0]
    assert totals["total_opens"] == report["opens_total"] == (human_events["action"] == "open").sum()
