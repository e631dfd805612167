"""What the Salesforce side contributes to Definitions: the assets the profile's mode uses and the resource.

Modes that add record kinds (activity, notes) list them in ``activity_assets.ACTIVITY_DESIRED_INPUTS`` (mode ->
list of ``(DesiredInput, AssetsDefinition builder)``); callers may pass more as ``extra``. The push writes them
after the Campaign records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from campaign_pipeline.modes import campaign_kind, campaign_member_kind
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.activity_assets import ACTIVITY_DESIRED_INPUTS
from campaign_pipeline.salesforce.assets import (
    DesiredInput,
    build_salesforce_matches,
    build_salesforce_sync,
    build_sf_campaign,
    build_sf_campaign_members,
)

MODES_WITH_CAMPAIGN = frozenset({"campaign", "campaign_and_activity", "campaign_totals"})
MODES_WITH_MEMBERS = frozenset({"campaign", "campaign_and_activity"})
MODES_MATCHING_PEOPLE = frozenset({"campaign", "activity", "campaign_and_activity", "notes"})

AssetBuilder = Callable[[SyncProfile], dg.AssetsDefinition]


def salesforce_assets(
    profile: SyncProfile, extra: Sequence[tuple[DesiredInput, AssetBuilder]] = ()
) -> list[dg.AssetsDefinition]:
    """Only the Salesforce assets the profile's mode uses, ending with the push (salesforce_sync)."""
    assets: list[dg.AssetsDefinition] = []
    desired_inputs: list[DesiredInput] = []
    if profile.mode in MODES_MATCHING_PEOPLE:
        assets.append(build_salesforce_matches(profile))
    if profile.mode in MODES_WITH_CAMPAIGN:
        assets.append(build_sf_campaign(profile))
        desired_inputs.append(DesiredInput("sf_campaign", campaign_kind))
    if profile.mode in MODES_WITH_MEMBERS:
        assets.append(build_sf_campaign_members(profile))
        desired_inputs.append(DesiredInput("sf_campaign_members", campaign_member_kind))
    for desired_input, builder in [*ACTIVITY_DESIRED_INPUTS.get(profile.mode, []), *extra]:
        assets.append(builder(profile))
        desired_inputs.append(desired_input)
    if desired_inputs:
        assets.append(build_salesforce_sync(profile, desired_inputs))
    return assets
