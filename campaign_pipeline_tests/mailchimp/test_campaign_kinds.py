"""Every campaign type Mailchimp documents, discovered, landed and reconciled over HTTP, with same-second repeat clicks."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from campaign_pipeline.core.campaign_types import campaign_type_label
from campaign_pipeline.mailchimp.assets import campaign_recipients, mailchimp_campaign_report, raw_email_events
from campaign_pipeline.mailchimp.campaigns import sent_campaign
from campaign_pipeline.mailchimp.landing import LandingStore
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.metrics.assets import METRICS_SETTINGS_KEY, MetricsSettings, metrics_asset_checks, metrics_assets
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.mailchimp_model import ResponseRates
from campaign_pipeline.sandbox.mailchimp_oracle import truth_events
from campaign_pipeline.storage.database import PIPELINE_SCHEMA
from campaign_pipeline.stores import store_resources
from campaign_pipeline_tests.mailchimp.conftest import resource_on


@pytest.fixture
def typed_account(tmp_path) -> SandboxAccount:
    # Many double clicks, so a small audience has plenty of same-second repeats.
    rates = ResponseRates(same_second_repeat_click=0.5)
    return SandboxAccount(
        seed=5, n_members=500, every_campaign_type=True, rates=rates, state_path=tmp_path / "mailchimp_state.json"
    )


@pytest.fixture
def typed_sandbox(typed_account, pg_engine):
    from campaign_pipeline.mailchimp.landing import LandingStore

    LandingStore(pg_engine)
    with pg_engine.begin() as conn:
        for table in ("landed_email_events", "mailchimp_fetch_cursors", "quarantined_records", "landed_recipients"):
            conn.execute(sa.text(f'TRUNCATE "{PIPELINE_SCHEMA}".{table}'))
    with MailchimpSandbox(typed_account) as served:
        yield served


def test_every_type_is_discovered_and_each_rss_send_is_its_own_partition(typed_account, typed_sandbox):
    listed = resource_on(typed_sandbox).list_sent_campaigns()
    types = [campaign.type for campaign in listed]
    assert set(types) == {"regular", "plaintext", "absplit", "variate", "rss", "automation"}
    rss_sends = [campaign for campaign in listed if campaign.type == "rss"]
    assert len(rss_sends) == 2 and len({c.id for c in rss_sends}) == 2
    assert {c.parent_campaign_id for c in rss_sends} == {typed_account.rss_campaign_id}
    assert all(c.sent_at_is_exact == (c.type != "automation") for c in listed)


def test_the_generator_makes_double_clicks_and_counts_them_like_mailchimp(typed_account):
    campaign_id = typed_account.campaign_ids()[0]
    truth = truth_events(typed_account, campaign_id)
    clicks = truth[truth["action"] == "click"]
    repeated = clicks.duplicated(["email_id", "timestamp", "url"]).sum()
    assert repeated > 0
    report = typed_account.report_totals(typed_account.spec(campaign_id))
    assert report["clicks_total"] == len(clicks)
    assert report["unique_clicks"] == len(clicks.drop_duplicates(["email_id", "url"]))


@pytest.mark.slow
def test_each_type_lands_and_reconciles_with_repeated_clicks(typed_account, typed_sandbox, dagster_instance):
    mailchimp = resource_on(typed_sandbox)
    by_type = {}
    for campaign in mailchimp.list_sent_campaigns():
        by_type.setdefault(campaign.type, campaign.id)
    assets = [
        raw_email_events,
        campaign_recipients,
        mailchimp_campaign_report,
        *metrics_assets(SyncProfile()),
        *metrics_asset_checks,
    ]
    for campaign_type, campaign_id in sorted(by_type.items()):
        dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
        result = dg.materialize(
            assets,
            instance=dagster_instance,
            partition_key=campaign_id,
            resources={
                "mailchimp": mailchimp,
                "io_manager": dg.mem_io_manager,
                METRICS_SETTINGS_KEY: MetricsSettings(),
                **store_resources(),
            },
        )
        assert result.success, campaign_type
        report = result.asset_value("mailchimp_campaign_report").iloc[0]
        # The UI shows the type in words on the report's materialization.
        [shown] = [m.metadata for m in result.asset_materializations_for_node("mailchimp_campaign_report")]
        assert shown["campaign_type"].value == campaign_type
        assert shown["campaign_type_label"].value == campaign_type_label(campaign_type)
        assert report["campaign_type"] == campaign_type  # "plain-text" and "ab_split" in /reports, canonical here
        # raw_email_events is stored in the landing tables themselves (no second copy): read it there.
        events = LandingStore().events(campaign_id)
        clicks = events[events["action"] == "click"]
        totals = result.asset_value("campaign_totals").iloc[0]
        assert totals["total_clicks"] == report["clicks_total"] == len(clicks)
        if campaign_type != "automation":
            assert (clicks["occurrence"] > 0).any(), campaign_type
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.passed, f"{campaign_type}: {evaluation.metadata['differences'].value}"
        statuses = result.asset_value("member_statuses")
        approximate = ~statuses["sent_at_is_exact"]
        assert approximate.any() == (campaign_type == "automation")
        assert statuses.loc[approximate, "time_to_open_minutes"].isna().all()
        assert (statuses["time_to_open_minutes"].dropna() >= 0).all()


def test_a_campaign_of_a_type_mailchimp_adds_later_is_discovered_with_a_warning(caplog) -> None:
    record = {
        "id": "abc123def4",
        "type": "SMS",
        "status": "sent",
        "send_time": "2026-01-05T10:00:00+00:00",
        "settings": {"title": "Text blast"},
        "recipients": {"list_id": "list1"},
    }
    with caplog.at_level("WARNING", logger="campaign_pipeline.mailchimp.campaigns"):
        campaign = sent_campaign(record)
    assert campaign is not None and campaign.type == "sms" and campaign.sent_at_is_exact
    assert "type 'sms', which this pipeline does not know; it is synced like a regular campaign" in caplog.text
