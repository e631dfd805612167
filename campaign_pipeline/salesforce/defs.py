"""What the Salesforce side contributes to Definitions: the assets the profile's mode uses and the resource.

The mode table (``campaign_pipeline.modes``) says whether the mode matches people and which desired-record assets
it has; this module maps those names to their asset builders and ends with the push (salesforce_sync).
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from campaign_pipeline.modes import DESIRED_ASSETS, desired_asset_names, mode_spec
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.activity_assets import build_sf_attachments, build_sf_notes, build_sf_tasks
from campaign_pipeline.salesforce.assets import (
    build_salesforce_matches,
    build_salesforce_sync,
    build_sf_campaign,
    build_sf_campaign_members,
)
from campaign_pipeline.salesforce.hierarchy_assets import build_sf_parent_campaigns
from campaign_pipeline.salesforce.opt_out_assets import build_sf_opt_outs

AssetBuilder = Callable[[SyncProfile], dg.AssetsDefinition]

# The Dagster asset of each desired-record asset in the mode table.
DESIRED_ASSET_BUILDERS: dict[str, AssetBuilder] = {
    "sf_campaign": build_sf_campaign,
    "sf_campaign_members": build_sf_campaign_members,
    "sf_tasks": build_sf_tasks,
    "sf_notes": build_sf_notes,
    "sf_attachments": build_sf_attachments,
    "sf_opt_outs": build_sf_opt_outs,
    "sf_parent_campaigns": build_sf_parent_campaigns,
}
assert set(DESIRED_ASSET_BUILDERS) == set(DESIRED_ASSETS), "every desired asset of the mode table needs a builder"


def salesforce_assets(profile: SyncProfile) -> list[dg.AssetsDefinition]:
    """Only the Salesforce assets the profile's mode uses, ending with the push (salesforce_sync)."""
    spec = mode_spec(profile)
    assets: list[dg.AssetsDefinition] = []
    if spec.matches_people:
        assets.append(build_salesforce_matches(profile))
    assets += [DESIRED_ASSET_BUILDERS[name](profile) for name in desired_asset_names(profile)]
    if spec.records:
        assets.append(build_salesforce_sync(profile))
    return assets
