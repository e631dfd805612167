"""The desired-record asset of the campaign hierarchy (profile: campaign_hierarchy): sf_parent_campaigns."""

from typing import Any

import dagster as dg
import pandas as pd

from campaign_pipeline.asset_metadata import metadata_per_campaign, preview_table
from campaign_pipeline.mailchimp.partitions import campaign_asset
from campaign_pipeline.modes import build_desired_frame
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.assets import SALESFORCE_GROUP


def build_sf_parent_campaigns(profile: SyncProfile) -> dg.AssetsDefinition:
    hierarchy = profile.campaign_hierarchy
    parts = []
    if hierarchy.automation_parents:
        parts.append("each Mailchimp automation workflow (its emails become child Campaigns)")
    if hierarchy.rss_parents:
        parts.append("each Mailchimp RSS campaign (its sends become child Campaigns)")
    if hierarchy.regular_parent:
        parts.append(f"'{hierarchy.regular_parent}' for every other campaign")

    @campaign_asset(
        name="sf_parent_campaigns",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "pandas"},
        ins={"mailchimp_campaign_report": dg.AssetIn()},
        description=(
            f"The parent Campaigns of the campaign hierarchy: one for {'; one for '.join(parts)}. "
            "salesforce_sync sets each Campaign's ParentId to its parent, so Salesforce's hierarchy roll-ups "
            "(members, responses in hierarchy) add up. A parent is keyed by its workflow or RSS campaign id (or a fixed key), "
            "created once through the sync ledger, and shared by every partition that names it."
        ),
    )
    def sf_parent_campaigns(
        context: dg.AssetExecutionContext, mailchimp_campaign_report: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile, "sf_parent_campaigns", {"mailchimp_campaign_report": mailchimp_campaign_report}
        )

        def describe(campaign_ids: list[str]) -> dict[str, Any]:
            # A parent is shared: each campaign shows the parents it names (built from its own report row).
            own_report = mailchimp_campaign_report[mailchimp_campaign_report["campaign_id"].isin(campaign_ids)]
            own = (
                desired
                if len(own_report) == len(mailchimp_campaign_report)
                else build_desired_frame(profile, "sf_parent_campaigns", {"mailchimp_campaign_report": own_report})
            )
            return {"dagster/row_count": len(own), "preview": preview_table(own)}

        return dg.Output(desired, metadata=metadata_per_campaign(context, describe))

    return sf_parent_campaigns
