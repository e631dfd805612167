"""`campaign-pipeline backfill --since`: bring in older campaigns as partitions and one batched Dagster backfill."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from campaign_pipeline.core.campaign_keys import campaign_id_from_key, keys_by_campaign_id
from campaign_pipeline.core.events import is_valid_campaign_id
from campaign_pipeline.mailchimp.campaigns import SentCampaign
from campaign_pipeline.mailchimp.ownership import PartitionOwners
from campaign_pipeline.mailchimp.partitions import CAMPAIGN_BACKFILL_POLICY, mailchimp_campaigns
from campaign_pipeline.mailchimp.sensors import sent_campaign_key
from campaign_pipeline.storage.database import get_engine

# The last asset of every mode's graph: a campaign whose salesforce_sync was materialized has been synced.
SYNCED_ASSET = dg.AssetKey("salesforce_sync")
HISTORY_TAG = "campaign_pipeline/trigger"


@dataclass
class HistoryPlan:
    """What `backfill --since` found, left out and (unless previewing) queued."""

    since: str
    source: str
    queued: list[dict[str, str]] = field(default_factory=list)
    already_synced: list[str] = field(default_factory=list)
    already_queued: list[str] = field(default_factory=list)
    other_account: list[str] = field(default_factory=list)
    over_limit: int = 0
    partitions_added: list[str] = field(default_factory=list)
    backfill_id: str | None = None
    runs: int = 0
    preview: bool = False


def _queued_campaign_ids(instance: dg.DagsterInstance) -> set[str]:
    """Campaign ids targeted by backfills not finished yet (queuing them again would sync them twice at once)."""
    unfinished = instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]))
    found: set[str] = set()
    for backfill in unfinished:
        data = backfill.asset_backfill_data
        if data is None:
            continue
        for asset_partition in data.target_subset.iterate_asset_partitions():
            if asset_partition.partition_key:
                try:
                    found.add(campaign_id_from_key(asset_partition.partition_key))
                except ValueError:
                    continue
    return found


def _synced_campaign_ids(instance: dg.DagsterInstance) -> set[str]:
    """Campaign ids whose salesforce_sync was materialized under any key (a bare id of before counts too)."""
    synced: set[str] = set()
    for key in instance.get_materialized_partitions(SYNCED_ASSET):
        try:
            synced.add(campaign_id_from_key(key))
        except ValueError:
            continue
    return synced


def plan_history(
    campaigns: list[SentCampaign],
    *,
    since: pd.Timestamp,
    source: str,
    owners: dict[str, str],
    synced: set[str],
    queued: set[str],
    limit: int | None,
    resync: bool,
) -> tuple[HistoryPlan, list[SentCampaign]]:
    """The campaigns to queue, oldest send first: sent since ``since``, owned by ``source`` or by no one, not
    synced yet (unless ``resync``), not in an unfinished backfill, at most ``limit``."""
    plan = HistoryPlan(since=since.date().isoformat(), source=source)
    chosen: list[SentCampaign] = []
    dated = [c for c in campaigns if c.send_time is not None and c.send_time >= since and is_valid_campaign_id(c.id)]
    for campaign in sorted(dated, key=lambda c: (c.send_time, c.id)):
        if owners.get(campaign.id, source) != source:
            plan.other_account.append(campaign.id)
        elif campaign.id in queued:
            plan.already_queued.append(campaign.id)
        elif campaign.id in synced and not resync:
            plan.already_synced.append(campaign.id)
        elif limit is not None and len(chosen) >= limit:
            plan.over_limit += 1
        else:
            chosen.append(campaign)
    return plan, chosen


def backfill_history(
    since: date,
    *,
    limit: int | None = None,
    preview: bool = False,
    resync: bool = False,
    instance: dg.DagsterInstance,
    profile: Any,
    mailchimp: Any,
    defs: dg.Definitions,
) -> HistoryPlan:
    """List the profile audience's campaigns sent since ``since``, add their partitions and launch one Dagster
    backfill over them, which the daemon runs in batches of the campaign backfill policy (20 campaigns a run).

    ``preview`` changes nothing. Campaigns of another Mailchimp account are never queued (partition owners);
    campaigns already synced are left out unless ``resync``; ``limit`` caps how many are queued.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be 1 or more, got {limit}")
    since_ts = pd.Timestamp(since, tz="UTC")
    source = mailchimp.source_identity()
    listed = mailchimp.list_sent_campaigns(since_send_time=since_ts, list_id=profile.mailchimp.list_id)
    partitions_name = str(mailchimp_campaigns.name)
    key_of = keys_by_campaign_id(instance.get_dynamic_partitions(partitions_name))
    owner_table = PartitionOwners(get_engine())
    plan, chosen = plan_history(
        listed,
        since=since_ts,
        source=source,
        owners=owner_table.owners([c.id for c in listed]),
        synced=_synced_campaign_ids(instance),
        queued=_queued_campaign_ids(instance),
        limit=limit,
        resync=resync,
    )
    plan.preview = preview
    keys = [key_of.get(c.id) or sent_campaign_key(c) for c in chosen]
    plan.queued = [
        {"partition_key": key, "campaign_id": c.id, "title": c.title or "", "send_time": c.send_time.isoformat()}
        for key, c in zip(keys, chosen, strict=True)
        if c.send_time is not None
    ]
    max_per_run = CAMPAIGN_BACKFILL_POLICY.max_partitions_per_run or 1
    plan.runs = math.ceil(len(keys) / max_per_run)
    if preview or not keys:
        return plan
    # Oldest first, so their creation order in the picker is their send order.
    plan.partitions_added = sorted(key for key in keys if key not in set(key_of.values()))
    if plan.partitions_added:
        instance.add_dynamic_partitions(partitions_name, plan.partitions_added)
    # The same rule as a run's preflight: these campaigns are this account's.
    owner_table.record([c.id for c in chosen], source)
    asset_graph = defs.resolve_asset_graph()
    selection = [
        key
        for key in asset_graph.materializable_asset_keys
        if asset_graph.get(key).partitions_def == mailchimp_campaigns
    ]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph,
        partition_names=keys,
        asset_selection=selection,
        backfill_timestamp=time.time(),
        tags={HISTORY_TAG: "history", "campaign_pipeline/history_since": plan.since},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"Mailchimp history since {plan.since}",
        description=f"{len(keys)} campaign(s) of {source} sent since {plan.since} (campaign-pipeline backfill)",
        run_config=None,
    )
    instance.add_backfill(backfill)
    plan.backfill_id = backfill.backfill_id
    return plan


def format_plan(plan: HistoryPlan) -> str:
    verb = "would queue" if plan.preview else "queued"
    lines = [f"Campaigns of {plan.source} sent since {plan.since}: {verb} {len(plan.queued)}"]
    for item in plan.queued:
        lines.append(f"  {item['partition_key']}  {item['title']}")
    left_out = [
        (len(plan.already_synced), "already synced (--resync queues them again)"),
        (len(plan.already_queued), "already in an unfinished backfill"),
        (len(plan.other_account), "belong to another Mailchimp account"),
        (plan.over_limit, "over --limit"),
    ]
    lines.extend(f"left out: {count} {why}" for count, why in left_out if count)
    if plan.backfill_id:
        lines.append(
            f"backfill {plan.backfill_id}: {len(plan.queued)} campaign(s) in {plan.runs} run(s) of at most "
            f"{CAMPAIGN_BACKFILL_POLICY.max_partitions_per_run}; the Dagster daemon (`dagster dev`) launches them "
            "(Overview -> Backfills in the UI)"
        )
    elif plan.preview and plan.queued:
        lines.append(
            f"preview: nothing added or launched (without --preview: {plan.runs} run(s) of at most "
            f"{CAMPAIGN_BACKFILL_POLICY.max_partitions_per_run})"
        )
    return "\n".join(lines)
