"""The schedule that re-syncs campaigns still inside the attribution window, since activity keeps arriving."""

import dagster as dg
import pandas as pd

from campaign_pipeline.core.campaign_keys import keys_by_campaign_id
from campaign_pipeline.core.events import is_valid_campaign_id
from campaign_pipeline.mailchimp.campaigns import SentCampaign
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.mailchimp.resource import MailchimpResource
from campaign_pipeline.mailchimp.sensors import RunTarget

SCHEDULE_NAME = "mailchimp_resync_schedule"
DEFAULT_RESYNC_CRON = "0 */6 * * *"


def campaigns_in_window(
    campaigns: list[SentCampaign], now: pd.Timestamp, attribution_window_days: int
) -> list[SentCampaign]:
    """Campaigns sent within the last `attribution_window_days` (and not in the future)."""
    start = now - pd.Timedelta(days=attribution_window_days)
    return [c for c in campaigns if c.send_time is not None and start <= c.send_time <= now]


def build_mailchimp_resync_schedule(
    target: "RunTarget",
    *,
    attribution_window_days: int = 30,
    cron_schedule: str = DEFAULT_RESYNC_CRON,
    name: str = SCHEDULE_NAME,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
    partitions_def: dg.DynamicPartitionsDefinition = mailchimp_campaigns,
    list_id: str | None = None,
) -> dg.ScheduleDefinition:
    """A schedule over `target` requesting one run per campaign partition sent inside the window.

    Only partitions that already exist are requested (the new-sends sensor adds partitions; a
    schedule cannot). The run key carries the tick time, so each tick re-syncs each campaign once.
    """

    partitions_name = partitions_def.name
    if not partitions_name:
        raise ValueError("the campaign partitions must be named dynamic partitions")

    @dg.schedule(
        name=name,
        cron_schedule=cron_schedule,
        target=target,
        default_status=default_status,
        execution_timezone="UTC",
        description=(
            f"Re-syncs every Mailchimp campaign sent in the last {attribution_window_days} days "
            "(the profile's attribution window): late opens, clicks and unsubscribes keep arriving."
        ),
    )
    def mailchimp_resync_schedule(context: dg.ScheduleEvaluationContext, mailchimp: MailchimpResource):
        now = mailchimp.now()
        window_start = now - pd.Timedelta(days=attribution_window_days)
        listed = mailchimp.list_sent_campaigns(since_send_time=window_start, list_id=list_id)
        key_of = keys_by_campaign_id(context.instance.get_dynamic_partitions(partitions_name))
        due = [
            c
            for c in campaigns_in_window(listed, now, attribution_window_days)
            if is_valid_campaign_id(c.id) and c.id in key_of
        ]
        if not due:
            return dg.SkipReason(
                f"No synced campaign was sent in the last {attribution_window_days} days ({mailchimp.source_description})"
            )
        tick = (context.scheduled_execution_time or now.to_pydatetime()).strftime("%Y%m%dT%H%M")
        return [
            dg.RunRequest(
                run_key=f"resync:{c.id}:{tick}",
                partition_key=key_of[c.id],
                tags={"mailchimp/campaign_type": c.type, "mailchimp/trigger": "attribution_window"},
            )
            for c in due
        ]

    return mailchimp_resync_schedule
