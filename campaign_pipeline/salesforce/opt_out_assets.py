"""The desired-record asset of opt-out sync (profile: matching.sync_opt_out): sf_opt_outs."""

from typing import Any

import dagster as dg
import pandas as pd

from campaign_pipeline.asset_metadata import metadata_per_partition, preview_table
from campaign_pipeline.core.opt_out_records import opt_outs_of
from campaign_pipeline.mailchimp.partitions import campaign_asset
from campaign_pipeline.modes import build_desired_frame
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.assets import SALESFORCE_GROUP


def build_sf_opt_outs(profile: SyncProfile) -> dg.AssetsDefinition:
    @campaign_asset(
        name="sf_opt_outs",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "pandas"},
        ins={"member_statuses": dg.AssetIn(), "salesforce_matches": dg.AssetIn()},
        description=(
            "Opt-out sync: the matched Contact or Lead of each member who unsubscribed from the campaign, to be "
            "marked HasOptedOutOfEmail = true (a person account: its Account, PersonHasOptedOutOfEmail = true, "
            "since the org keeps person contacts read-only). Only ever sets the flag (never clears it); each person is written "
            "once per campaign, through the sync ledger. Keyed by campaign + Salesforce person."
        ),
    )
    def sf_opt_outs(
        context: dg.AssetExecutionContext, member_statuses: pd.DataFrame, salesforce_matches: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile, "sf_opt_outs", {"member_statuses": member_statuses, "salesforce_matches": salesforce_matches}
        )

        def describe(own: pd.DataFrame) -> dict[str, Any]:
            return {
                "dagster/row_count": len(own),
                "contacts": len(opt_outs_of(own, "Contact")),
                "leads": len(opt_outs_of(own, "Lead")),
                "person_accounts": len(opt_outs_of(own, "Account")),
                "preview": preview_table(own),
            }

        return dg.Output(desired, metadata=metadata_per_partition(context, desired, describe))

    return sf_opt_outs
