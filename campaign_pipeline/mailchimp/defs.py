"""What the Mailchimp side contributes to Definitions: assets per mode, resources, the sensor and schedule."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from campaign_pipeline.mailchimp.assets import (
    campaign_content,
    campaign_recipients,
    mailchimp_campaign_report,
    raw_email_events,
)
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.mailchimp.schedules import SCHEDULE_NAME, build_mailchimp_resync_schedule
from campaign_pipeline.mailchimp.sensors import DEFAULT_LOOKBACK_DAYS, SENSOR_NAME, RunTarget, build_mailchimp_sensor
from campaign_pipeline.modes import mode_spec
from campaign_pipeline.profile import SyncProfile


def mailchimp_assets(profile: SyncProfile) -> list[dg.AssetsDefinition]:
    """The Mailchimp assets the profile's mode uses (campaign_content only when notes attach the HTML)."""
    assets = [raw_email_events, campaign_recipients, mailchimp_campaign_report]
    if mode_spec(profile).needs_content:
        assets.append(campaign_content)
    return assets


def build_mailchimp_sensors(
    job: RunTarget,
    profile: SyncProfile,
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    partitions_def: dg.DynamicPartitionsDefinition = mailchimp_campaigns,
    name_prefix: str = "",
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """The new-sends sensor and the attribution-window resync schedule of one sync profile, both targeting
    `job`, over the profile's audience and campaign partitions (`name_prefix` names them per profile)."""
    sensor = build_mailchimp_sensor(
        job,
        lookback_days=lookback_days,
        name=f"{name_prefix}{SENSOR_NAME}",
        partitions_def=partitions_def,
        list_id=profile.mailchimp.list_id,
        history_since=(
            pd.Timestamp(profile.mailchimp.history_since, tz="UTC") if profile.mailchimp.history_since else None
        ),
    )
    schedule = build_mailchimp_resync_schedule(
        job,
        attribution_window_days=profile.attribution_window_days,
        name=f"{name_prefix}{SCHEDULE_NAME}",
        partitions_def=partitions_def,
        list_id=profile.mailchimp.list_id,
    )
    return [sensor], [schedule]
