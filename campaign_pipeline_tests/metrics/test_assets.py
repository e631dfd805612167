"""The metrics assets and their check, materialized over stand-in Mailchimp assets with literal frames."""

import dagster as dg
import pandas as pd

from campaign_pipeline.frame_types import CampaignRecipientsType, MailchimpCampaignReportType, RawEmailEventsType
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.metrics.assets import (
    METRICS_SETTINGS_KEY,
    MetricsSettings,
    metrics_asset_checks,
    metrics_assets,
)
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline_tests.core.frames import events, recipients, report

CAMPAIGN = "c1"


def stand_ins(recipient_frame: pd.DataFrame, event_frame: pd.DataFrame, report_frame: pd.DataFrame) -> list:
    """Upstream assets under the keys the Mailchimp side uses, returning the given frames."""
    policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=20)

    @dg.asset(partitions_def=mailchimp_campaigns, dagster_type=CampaignRecipientsType, backfill_policy=policy)
    def campaign_recipients() -> pd.DataFrame:
        return recipient_frame

    @dg.asset(partitions_def=mailchimp_campaigns, dagster_type=RawEmailEventsType, backfill_policy=policy)
    def raw_email_events() -> pd.DataFrame:
        return event_frame

    @dg.asset(partitions_def=mailchimp_campaigns, dagster_type=MailchimpCampaignReportType, backfill_policy=policy)
    def mailchimp_campaign_report() -> pd.DataFrame:
        return report_frame

    return [campaign_recipients, raw_email_events, mailchimp_campaign_report]


def run(
    report_frame: pd.DataFrame,
    settings: MetricsSettings | None = None,
    event_frame: pd.DataFrame | None = None,
    profile: SyncProfile | None = None,
):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])
    recipient_frame = recipients(("ann@example.com",), ("bob@example.com",), ("cy@example.com", "hard"))
    if event_frame is None:
        event_frame = events(
            ("ann@example.com", "open", "2024-03-01 10:00"),
            ("ann@example.com", "click", "2024-03-01 10:00", "https://shop.example/a"),
            ("bob@example.com", "open", "2024-03-01 11:00"),
            ("bob@example.com", "unsubscribe", "2024-03-01 12:00"),
            ("zed@example.com", "open", "2024-03-01 12:00"),
        )
    result = dg.materialize(
        [
            *stand_ins(recipient_frame, event_frame, report_frame),
            *metrics_assets(profile or SyncProfile()),
            *metrics_asset_checks,
        ],
        partition_key=CAMPAIGN,
        instance=instance,
        resources={METRICS_SETTINGS_KEY: settings or MetricsSettings()},
        raise_on_error=False,
    )
    return result


def matching_report() -> pd.DataFrame:
    return report(
        emails_sent=3,
        unique_opens=2,
        opens_total=2,
        unique_subscriber_clicks=1,
        clicks_total=1,
        hard_bounces=1,
        unsubscribed=1,
        open_rate=1.0,
        click_rate=0.5,
        forwards_count=5,
    )


def materialization_metadata(result, asset_name: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset_name)]
    return event.materialization.metadata


def check_result(result) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_assets_compute_statuses_totals_and_metadata():
    result = run(matching_report())
    assert result.success
    statuses = result.asset_value("member_statuses")
    assert dict(zip(statuses["email_address"], statuses["latest_status"], strict=True)) == {
        "ann@example.com": "Clicked",
        "bob@example.com": "Unsubscribed",
        "cy@example.com": "Bounced",
        "zed@example.com": "Opened",
    }
    totals = result.asset_value("campaign_totals").iloc[0]
    assert (totals["emails_sent"], totals["delivered"], totals["forwards"], totals["non_recipient_members"]) == (
        3,
        2,
        5,
        1,
    )
    metadata = materialization_metadata(result, "member_statuses")
    assert metadata["dagster/row_count"].value == 4
    assert metadata["status_clicked"].value == 1 and metadata["status_sent"].value == 0
    assert metadata["non_recipient_members"].value == 1
    assert metadata["send_times"].value == "All send times are exact"
    assert "| Clicked" in metadata["status_breakdown"].value
    assert "zed@example.com" in metadata["preview"].value
    totals_metadata = materialization_metadata(result, "campaign_totals")
    assert totals_metadata["open_rate"].value == "100.0%" and totals_metadata["open_rate_percent"].value == 100.0
    funnel = materialization_metadata(result, "campaign_totals")["funnel"].value
    assert funnel.startswith("![campaign funnel](data:image/png;base64,")


def test_check_passes_when_report_agrees():
    result = run(matching_report())
    evaluation = check_result(result)
    assert evaluation.passed
    assert evaluation.metadata["differing_numbers"].value == 0


def test_check_fails_visibly_with_the_differing_numbers_without_failing_the_run():
    drifted = matching_report()
    drifted["unique_opens"] = 40
    drifted["emails_sent"] = 50
    result = run(drifted)
    assert result.success  # the run goes on; the check carries the failure
    evaluation = check_result(result)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["differing_numbers"].value == 2
    table = evaluation.metadata["differences"].value
    assert "unique_opens" in table and "40" in table and "emails_sent" in table and "50" in table


def test_tolerance_is_configurable():
    drifted = matching_report()
    drifted["emails_sent"] = 4  # 25% off
    assert not check_result(run(drifted)).passed
    assert check_result(run(drifted, MetricsSettings(reconcile_tolerance=0.3))).passed


def test_highest_rank_rule_reaches_the_asset_from_the_profile():
    result = run(matching_report(), profile=SyncProfile(status_rule="highest_rank"))
    statuses = result.asset_value("member_statuses").set_index("email_address")
    assert statuses.loc["bob@example.com", "latest_status"] == "Opened"
    assert materialization_metadata(result, "member_statuses")["status_rule"].value == "highest_rank"


def test_malformed_upstream_frame_fails_the_type_check_loudly():
    bad_events = events(("ann@example.com", "open", "2024-03-01 10:00"))
    bad_events.loc[0, "action"] = "forward"
    result = run(matching_report(), event_frame=bad_events)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "raw_email_events"


def test_asset_specs_are_stable():
    specs = {spec.key.to_user_string(): spec for asset in metrics_assets(SyncProfile()) for spec in asset.specs}
    assert set(specs) == {"member_statuses", "campaign_totals"}
    assert {dep.asset_key.to_user_string() for dep in specs["member_statuses"].deps} == {
        "campaign_recipients",
        "raw_email_events",
    }
    assert {dep.asset_key.to_user_string() for dep in specs["campaign_totals"].deps} == {
        "member_statuses",
        "mailchimp_campaign_report",
    }
    assert all(spec.group_name == "metrics" and spec.partitions_def == mailchimp_campaigns for spec in specs.values())
    assert all(spec.description for spec in specs.values())
    [check] = metrics_asset_checks
    assert [key.name for key in check.check_keys] == ["totals_match_mailchimp_report"]


def test_automation_send_times_are_flagged_as_approximate_in_metadata():
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])
    automation_recipients = recipients(("ann@example.com",), ("bob@example.com",), exact=False)
    result = dg.materialize(
        [*stand_ins(automation_recipients, events(), report(emails_sent=2)), *metrics_assets(SyncProfile())],
        partition_key=CAMPAIGN,
        instance=instance,
        resources={METRICS_SETTINGS_KEY: MetricsSettings()},
    )
    metadata = materialization_metadata(result, "member_statuses")
    assert metadata["approximate_send_times"].value == 2
    assert "approximate" in metadata["send_times"].value
    assert not result.asset_value("member_statuses")["sent_at_is_exact"].any()
