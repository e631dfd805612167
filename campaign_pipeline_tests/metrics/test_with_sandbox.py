"""Metrics over the real Mailchimp assets fed by the sandbox account: the reconciliation check passes on it."""

import dagster as dg
import pytest
import sqlalchemy as sa

from campaign_pipeline.core.schemas import CampaignTotals, MemberStatuses
from campaign_pipeline.mailchimp.assets import campaign_recipients, mailchimp_campaign_report, raw_email_events
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.metrics.assets import METRICS_SETTINGS_KEY, MetricsSettings, metrics_asset_checks, metrics_assets
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.storage.database import PIPELINE_SCHEMA
from campaign_pipeline.stores import store_resources

pytestmark = pytest.mark.slow


@pytest.fixture
def served_account(tmp_path, pg_engine):
    from campaign_pipeline.mailchimp.landing import LandingStore

    LandingStore(pg_engine)
    with pg_engine.begin() as connection:
        for table in ("landed_email_events", "mailchimp_fetch_cursors", "quarantined_records", "landed_recipients"):
            connection.execute(sa.text(f'TRUNCATE "{PIPELINE_SCHEMA}".{table}'))
    account = SandboxAccount(seed=23, n_members=600, state_path=tmp_path / "mailchimp_state.json")
    with MailchimpSandbox(account) as served:
        yield account, served


def test_sandbox_campaigns_reconcile_with_their_reports(served_account, dagster_instance):
    from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection

    account, served = served_account
    mailchimp = LiveMailchimpResource(
        connection=MailchimpConnection(api_key=served.api_key, base_url=served.base_url),
        backoff_base_seconds=0.001,
        backoff_max_seconds=0.01,
    )
    campaigns = {campaign.type: campaign.id for campaign in mailchimp.list_sent_campaigns()}
    assert {"regular", "automation"} <= set(campaigns)
    for campaign_type in ("regular", "automation"):
        campaign_id = campaigns[campaign_type]
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
        statuses = result.asset_value("member_statuses")
        MemberStatuses.validate(statuses)
        CampaignTotals.validate(result.asset_value("campaign_totals"))
        assert set(statuses["latest_status"]) >= {"Opened", "Sent"}
        assert statuses.loc[statuses["is_recipient"], "sent_at_is_exact"].all() == (campaign_type == "regular")
        [evaluation] = result.get_asset_check_evaluations()
        differing = evaluation.metadata["differences"].value
        assert evaluation.passed, f"{campaign_type} campaign {campaign_id} drifts from its report:\n{differing}"
