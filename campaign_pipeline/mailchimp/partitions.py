"""The dynamic partitions: one per sent Mailchimp campaign (regular campaigns and automation emails)."""

from typing import Any

import dagster as dg

MAILCHIMP_CAMPAIGNS_PARTITIONS = "mailchimp_campaigns"
# Keys read `<send date>_<title slug>_<campaign id>` (core.campaign_keys): they sort by send date in the partition
# picker and plots, and core.campaign_keys.campaign_id_from_key gives back the campaign id every store keys on.
# Keys of before (the bare campaign id) still resolve; the new-sends sensor replaces them once.
mailchimp_campaigns = dg.DynamicPartitionsDefinition(name=MAILCHIMP_CAMPAIGNS_PARTITIONS)

# Every per-campaign asset shares these, so a backfill of many campaigns runs as batches of 20 campaigns
# per run, end to end, instead of one run per campaign.
CAMPAIGN_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=20)
# The frame column holding each row's campaign id: the Postgres IO manager stores rows under the campaign id of
# their partition key, and splits a multi-campaign frame by this column.
CAMPAIGN_PARTITION_METADATA = {"partition_expr": "campaign_id"}


# The first step of every run (campaign_pipeline.preflight): its checks pass before anything pages Mailchimp.
PREFLIGHT_ASSET = "preflight"


def campaign_asset(*, after_preflight: bool = False, **asset_kwargs: Any) -> Any:
    """`dg.asset` for a per-campaign asset: campaign partitions, the batched backfill policy and the
    partition column the IO manager splits by, applied in this one place. `after_preflight` makes the asset wait
    for the preflight checks (the assets that call an outside system first)."""
    metadata = {**CAMPAIGN_PARTITION_METADATA, **asset_kwargs.pop("metadata", {})}
    if after_preflight:
        asset_kwargs["deps"] = [*asset_kwargs.get("deps", []), PREFLIGHT_ASSET]
    return dg.asset(
        partitions_def=mailchimp_campaigns, backfill_policy=CAMPAIGN_BACKFILL_POLICY, metadata=metadata, **asset_kwargs
    )
