"""Per-campaign metrics assets (member statuses, campaign totals) and the check against Mailchimp's report."""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from campaign_pipeline.asset_metadata import (
    RATE_COLUMNS,
    metadata_per_partition,
    percent,
    preview_table,
    with_percentages,
)
from campaign_pipeline.core.metrics import campaign_totals as compute_campaign_totals
from campaign_pipeline.core.metrics import member_statuses as compute_member_statuses
from campaign_pipeline.core.metrics import reconcile_totals
from campaign_pipeline.core.schemas import MEMBER_STATUSES
from campaign_pipeline.frame_types import CampaignTotalsType, MemberStatusesType
from campaign_pipeline.mailchimp.partitions import campaign_asset, mailchimp_campaigns
from campaign_pipeline.metrics.charts import funnel_metadata
from campaign_pipeline.profile import SyncProfile

METRICS_GROUP = "metrics"
METRICS_SETTINGS_KEY = "metrics_settings"


class MetricsSettings(dg.ConfigurableResource):
    """How much drift from Mailchimp's report is tolerated. The same for every sync profile of a deployment
    (the status rule is the profile's own and reaches member_statuses through its builder)."""

    reconcile_tolerance: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="Relative difference (0.02 = 2%) between computed totals and Mailchimp's report still passing.",
    )


def metrics_resources() -> dict[str, MetricsSettings]:
    """Resources the metrics assets need, under their keys (profile-independent, shared by every profile)."""
    return {METRICS_SETTINGS_KEY: MetricsSettings()}


def build_member_statuses(profile: SyncProfile) -> dg.AssetsDefinition:
    """member_statuses under the profile's status rule."""
    status_rule = profile.status_rule

    @campaign_asset(
        group_name=METRICS_GROUP,
        dagster_type=MemberStatusesType,
        kinds={"pandas"},
        description=(
            "One row per campaign x member: the member's status (Clicked, Opened, Bounced, Unsubscribed or Sent by "
            "the profile's status_rule) and response metrics (opens, clicks, first/last times, time to open, "
            "bounce type, unsubscribe time). Repeated events count once; members compare by email hash, so case "
            "differences do not split them. Members with events but not in sent-to are kept with "
            "is_recipient = false. sent_at_is_exact = false marks automation emails, whose send time is approximate."
        ),
    )
    def member_statuses(
        context: dg.AssetExecutionContext,
        campaign_recipients: pd.DataFrame,
        raw_email_events: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        statuses = compute_member_statuses(campaign_recipients, raw_email_events, status_rule=status_rule)
        recipients = statuses["is_recipient"]
        approximate = int((recipients & ~statuses["sent_at_is_exact"]).sum())
        non_recipients = int((~recipients).sum())
        if non_recipients:
            context.log.warning(
                f"{non_recipients} member(s) have events but are not in the campaign's sent-to; kept with "
                "is_recipient = false and counted in campaign_totals.non_recipient_members"
            )
        if approximate:
            context.log.info(f"{approximate} recipient(s) have approximate send times (automation emails)")
        return dg.Output(
            statuses,
            metadata=metadata_per_partition(context, statuses, lambda own: _statuses_metadata(own, status_rule)),
        )

    return member_statuses


def _statuses_metadata(statuses: pd.DataFrame, status_rule: str) -> dict[str, Any]:
    breakdown = statuses["latest_status"].value_counts().reindex(list(MEMBER_STATUSES), fill_value=0)
    recipients = statuses["is_recipient"]
    approximate = int((recipients & ~statuses["sent_at_is_exact"]).sum())
    send_time_note = (
        f"{approximate} recipient(s) of automation emails: Mailchimp gives no per-recipient send time, so their "
        "Sent time is approximate (sent_at_is_exact = false): the email's send time, or the member's first "
        "activity when that is earlier; time_to_open_minutes is left empty for them"
        if approximate
        else "All send times are exact"
    )
    return {
        "dagster/row_count": len(statuses),
        "send_times": dg.MetadataValue.text(send_time_note),
        "status_rule": status_rule,
        "status_breakdown": preview_table(breakdown.rename_axis("status").reset_index(name="members"), rows=None),
        **{f"status_{status.lower()}": int(count) for status, count in breakdown.items()},
        "recipients": int(recipients.sum()),
        "non_recipient_members": int((~recipients).sum()),
        "approximate_send_times": approximate,
        "preview": preview_table(statuses),
    }


# What campaign_totals reads of member_statuses: the IO manager loads only these columns.
TOTALS_MEMBER_COLUMNS = [
    "campaign_id",
    "is_recipient",
    "latest_status",
    "bounce_type",
    "was_opened",
    "was_clicked",
    "was_unsubscribed",
    "total_opens",
    "total_clicks",
]


@campaign_asset(
    group_name=METRICS_GROUP,
    dagster_type=CampaignTotalsType,
    kinds={"pandas"},
    ins={
        "member_statuses": dg.AssetIn(metadata={"columns": TOTALS_MEMBER_COLUMNS}),
        "mailchimp_campaign_report": dg.AssetIn(),
    },
    description=(
        "One row per campaign: emails sent, delivered, unique and total opens, subscribers who clicked, total "
        "clicks, hard and soft bounces, unsubscribes (all over sent-to recipients), forwards, forward opens and "
        "abuse reports (from Mailchimp's report, the only source), open, click and click-to-open rates on "
        "delivered (0 when there is nothing to divide by), and members with events outside sent-to."
    ),
)
def campaign_totals(
    context: dg.AssetExecutionContext, member_statuses: pd.DataFrame, mailchimp_campaign_report: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    totals = compute_campaign_totals(member_statuses, mailchimp_campaign_report)

    def describe(own: pd.DataFrame) -> dict[str, Any]:
        metadata: dict[str, Any] = {"dagster/row_count": len(own), "preview": preview_table(with_percentages(own))}
        if len(own) == 1:
            # One campaign: its numbers as first-class metadata, plottable over runs.
            only = own.iloc[0]
            for column in ("emails_sent", "delivered", "unique_opens", "unique_subscriber_clicks", "unsubscribes"):
                metadata[column] = int(only[column])
            for column in RATE_COLUMNS:
                # As people read a rate ("29.8%"), and as a number the UI can plot over runs.
                metadata[column] = percent(float(only[column]))
                metadata[f"{column}_percent"] = dg.MetadataValue.float(round(100 * float(only[column]), 2))
            campaign = member_statuses["campaign_id"] == only["campaign_id"]
            recipients = member_statuses[campaign & member_statuses["is_recipient"]]
            report = mailchimp_campaign_report[mailchimp_campaign_report["campaign_id"] == only["campaign_id"]]
            titles = report["campaign_title"] if len(report) else pd.Series([""])
            metadata["funnel"] = funnel_metadata(
                only,
                recipients["latest_status"].astype(str).value_counts(),
                str(titles.iloc[0] or only["campaign_id"]),
            )
        return metadata

    return dg.Output(totals, metadata=metadata_per_partition(context, totals, describe))


def build_metrics_asset_checks(
    partitions_def: dg.PartitionsDefinition = mailchimp_campaigns,
) -> list[dg.AssetChecksDefinition]:
    """The metrics checks on `partitions_def`, which must be campaign_totals' own (a profile instance has its own)."""

    @dg.asset_check(
        asset=campaign_totals,
        name="totals_match_mailchimp_report",
        # Partitioned like its asset: each campaign's check loads that campaign's rows only, so one campaign's
        # drift never fails another campaign's check.
        partitions_def=partitions_def,
        additional_ins={"mailchimp_campaign_report": dg.AssetIn()},
        description=(
            "Computed totals (sent, opens, clicks, bounces, unsubscribes, rates) agree with Mailchimp's own report "
            "within metrics_settings.reconcile_tolerance (default 2%, relative). Drift fails the check and lists "
            "the differing numbers; it never stops the run."
        ),
    )
    def totals_match_mailchimp_report(
        metrics_settings: MetricsSettings, campaign_totals: pd.DataFrame, mailchimp_campaign_report: pd.DataFrame
    ) -> dg.AssetCheckResult:
        tolerance = metrics_settings.reconcile_tolerance
        differences = reconcile_totals(campaign_totals, mailchimp_campaign_report, tolerance=tolerance)
        unreported = sorted(set(campaign_totals["campaign_id"]) - set(mailchimp_campaign_report["campaign_id"]))
        passed = differences.empty and not unreported
        metadata: dict[str, Any] = {
            "campaigns_checked": dg.MetadataValue.text(", ".join(sorted(map(str, campaign_totals["campaign_id"])))),
            "tolerance": percent(tolerance),
            "differing_numbers": len(differences),
            "differences": preview_table(differences.round(4), rows=None),
        }
        if unreported:
            metadata["campaigns_without_report"] = dg.MetadataValue.text(", ".join(unreported))
        description = (
            "Computed totals match Mailchimp's report"
            if passed
            else f"{len(differences)} number(s) differ from Mailchimp's report beyond {tolerance:.1%}"
            + (f"; no report for {', '.join(unreported)}" if unreported else "")
        )
        return dg.AssetCheckResult(
            passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata, description=description
        )

    return [totals_match_mailchimp_report]


def metrics_assets(profile: SyncProfile) -> list[dg.AssetsDefinition]:
    return [build_member_statuses(profile), campaign_totals]


metrics_asset_checks: list[dg.AssetChecksDefinition] = build_metrics_asset_checks()
