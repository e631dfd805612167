"""Sync modes as data: per mode, which record kinds it writes and how its desired records are built."""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.salesforce_records import (
    desired_campaign_member_statuses,
    desired_campaign_members,
    desired_campaigns,
)
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import (
    CAMPAIGN_KIND,
    CAMPAIGN_MEMBER_KIND,
    CAMPAIGN_MEMBER_STATUS_KIND,
    DesiredRecords,
    RecordKind,
    with_external_id,
)


def campaign_kind(profile: SyncProfile) -> RecordKind:
    """Campaign records, upserted by the profile's Campaign external-ID field when it has one."""
    return with_external_id(CAMPAIGN_KIND, profile.field_mapping.campaign_key_field)


def campaign_member_kind(profile: SyncProfile) -> RecordKind:
    """CampaignMember records, upserted by the profile's CampaignMember external-ID field when it has one."""
    return with_external_id(CAMPAIGN_MEMBER_KIND, profile.field_mapping.campaign_member_key_field)


def campaign_mode_records(
    profile: SyncProfile,
    *,
    campaign_totals: pd.DataFrame,
    campaign_report: pd.DataFrame,
    member_statuses: pd.DataFrame | None = None,
    matches: pd.DataFrame | None = None,
) -> list[DesiredRecords]:
    """Desired records of modes campaign (Campaign, its member statuses, members) and campaign_totals (Campaign)."""
    campaigns = desired_campaigns(
        campaign_totals,
        campaign_report,
        totals_mapping=profile.field_mapping.campaign,
        key_field=profile.field_mapping.campaign_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )
    desired = [DesiredRecords(campaign_kind(profile), campaigns)]
    if profile.mode == "campaign_totals" or member_statuses is None or matches is None:
        return desired
    members = desired_campaign_members(
        member_statuses,
        matches,
        member_mapping=profile.field_mapping.campaign_member,
        key_field=profile.field_mapping.campaign_member_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )
    return [
        *desired,
        DesiredRecords(CAMPAIGN_MEMBER_STATUS_KIND, desired_campaign_member_statuses(campaigns["campaign_id"])),
        DesiredRecords(campaign_member_kind(profile), members),
    ]
