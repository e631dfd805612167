"""`campaign-pipeline backfill --since`: bring in older campaigns as partitions and one batched Dagster backfill.

`--list` only says what it would queue; `--preview` queues the backfill as a dry run (its runs carry the run tag
campaign_pipeline/preview=true: they read, diff and count, and write nothing to Salesforce or the ledger);
`--instance` targets a named sync profile of the deployment (components/) instead of the default one.
"""

from __future__ import annotations

import difflib
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
from campaign_pipeline.mailchimp.partitions import CAMPAIGN_BACKFILL_POLICY, MAILCHIMP_CAMPAIGNS_PARTITIONS
from campaign_pipeline.mailchimp.sensors import sent_campaign_key
from campaign_pipeline.salesforce.sync_metadata import PREVIEW_TAG, preview_requested
from campaign_pipeline.storage.database import get_engine

# The last asset of every mode's graph: a campaign whose salesforce_sync was materialized has been synced.
SYNCED_ASSET = dg.AssetKey("salesforce_sync")
HISTORY_TAG = "campaign_pipeline/trigger"
# salesforce_sync's count in a dry run only (salesforce.sync_metadata.campaign_metadata): a materialization that
# has it wrote nothing, so its campaign is not synced yet.
DRY_RUN_COUNT = "would_create"


@dataclass(frozen=True)
class BackfillTarget:
    """Which sync profile of the deployment a backfill is for: its partitions and its last asset."""

    instance: str | None = None

    @property
    def partitions_name(self) -> str:
        from campaign_pipeline.definitions import instance_partitions_name

        return MAILCHIMP_CAMPAIGNS_PARTITIONS if self.instance is None else instance_partitions_name(self.instance)

    @property
    def synced_asset(self) -> dg.AssetKey:
        return SYNCED_ASSET if self.instance is None else dg.AssetKey([self.instance, *SYNCED_ASSET.path])


class UnknownInstance(ValueError):
    """`--instance` names no sync profile of the deployment."""


def choose_target(profiles: dict[str | None, Any], name: str | None) -> tuple[BackfillTarget, Any]:
    """The target and profile of the instance called ``name`` (None: the default one) among the deployment's
    ``profiles`` (definitions.deployment_profiles); a wrong name lists the instances and suggests the closest."""
    if name in profiles:
        return BackfillTarget(name), profiles[name]
    named = sorted(key for key in profiles if key is not None)
    available = ", ".join(named) or "none"
    default = "; leave --instance out for the default profile" if None in profiles else ""
    if name is None:
        raise UnknownInstance(
            f"this deployment has no default sync profile (campaign_pipeline/defs/ holds only named ones): pick one "
            f"with --instance; available: {available}"
        )
    close = difflib.get_close_matches(name, named, n=1)
    suggestion = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownInstance(
        f"no sync profile instance named {name!r} under campaign_pipeline/defs/; {suggestion}"
        f"available: {available}{default}"
    )


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
    list_only: bool = False
    instance: str | None = None


def _campaign_id(key: str) -> str | None:
    try:
        return campaign_id_from_key(key)
    except ValueError:
        return None


def _is_dry_run(backfill: PartitionBackfill) -> bool:
    try:
        return preview_requested(backfill.tags)
    except dg.Failure:  # a tag value that is neither: its runs fail at salesforce_sync and write nothing
        return True


def _queued_campaign_ids(instance: dg.DagsterInstance, target: BackfillTarget) -> set[str]:
    """Campaign ids whose sync (the target's salesforce_sync) is in a backfill not finished yet: queuing them again
    would sync them twice at once. Dry-run backfills write nothing, so they hold no campaign back."""
    unfinished = instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]))
    found: set[str] = set()
    for backfill in unfinished:
        data = backfill.asset_backfill_data
        if data is None or _is_dry_run(backfill):
            continue
        for asset_partition in data.target_subset.iterate_asset_partitions():
            if asset_partition.asset_key == target.synced_asset and asset_partition.partition_key:
                campaign_id = _campaign_id(asset_partition.partition_key)
                if campaign_id:
                    found.add(campaign_id)
    return found


def _synced_campaign_ids(instance: dg.DagsterInstance, target: BackfillTarget, campaign_ids: set[str]) -> set[str]:
    """Those of ``campaign_ids`` whose salesforce_sync was materialized by a real run under any key (a bare id of
    before counts too); a campaign only ever previewed (dry runs) is not synced."""
    keys = [
        key for key in instance.get_materialized_partitions(target.synced_asset) if _campaign_id(key) in campaign_ids
    ]
    synced: set[str] = set()
    cursor = None
    while keys:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=target.synced_asset, asset_partitions=keys), limit=1000, cursor=cursor
        )
        for record in records.records:
            materialization = record.asset_materialization
            if materialization is not None and DRY_RUN_COUNT not in materialization.metadata:
                synced.add(str(_campaign_id(str(materialization.partition))))
        if not records.has_more:
            break
        cursor = records.cursor
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
    list_only: bool = False,
    resync: bool = False,
    instance: dg.DagsterInstance,
    profile: Any,
    mailchimp: Any,
    defs: dg.Definitions,
    target: BackfillTarget | None = None,
) -> HistoryPlan:
    """List the profile audience's campaigns sent since ``since``, add their partitions and launch one Dagster
    backfill over them, which the daemon runs in batches of the campaign backfill policy (20 campaigns a run).

    ``list_only`` changes nothing. ``preview`` launches the backfill as a dry run: its runs carry the run tag
    campaign_pipeline/preview=true, so they write nothing to Salesforce or the ledger. ``target`` is the sync
    profile instance (`profile` is its profile, `defs` holds its assets); the default one when None. Campaigns of
    another Mailchimp account are never queued (partition owners); campaigns already synced are left out unless
    ``resync``; ``limit`` caps how many are queued.
    """
    target = target or BackfillTarget()
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be 1 or more, got {limit}")
    since_ts = pd.Timestamp(since, tz="UTC")
    source = mailchimp.source_identity()
    listed = mailchimp.list_sent_campaigns(since_send_time=since_ts, list_id=profile.mailchimp.list_id)
    partitions_name = target.partitions_name
    key_of = keys_by_campaign_id(instance.get_dynamic_partitions(partitions_name))
    owner_table = PartitionOwners(get_engine())
    plan, chosen = plan_history(
        listed,
        since=since_ts,
        source=source,
        owners=owner_table.owners([c.id for c in listed]),
        synced=_synced_campaign_ids(instance, target, {c.id for c in listed}),
        queued=_queued_campaign_ids(instance, target),
        limit=limit,
        resync=resync,
    )
    plan.preview, plan.list_only, plan.instance = preview, list_only, target.instance
    keys = [key_of.get(c.id) or sent_campaign_key(c) for c in chosen]
    plan.queued = [
        {"partition_key": key, "campaign_id": c.id, "title": c.title or "", "send_time": c.send_time.isoformat()}
        for key, c in zip(keys, chosen, strict=True)
        if c.send_time is not None
    ]
    max_per_run = CAMPAIGN_BACKFILL_POLICY.max_partitions_per_run or 1
    plan.runs = math.ceil(len(keys) / max_per_run)
    if list_only or not keys:
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
        if getattr(asset_graph.get(key).partitions_def, "name", None) == partitions_name
    ]
    if target.synced_asset not in selection:
        raise ValueError(f"the definitions hold no {target.synced_asset.to_user_string()} on {partitions_name}")
    dry_run = "Dry run: " if preview else ""
    tags = {HISTORY_TAG: "history", "campaign_pipeline/history_since": plan.since}
    if preview:
        tags[PREVIEW_TAG] = "true"
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph,
        partition_names=keys,
        asset_selection=selection,
        backfill_timestamp=time.time(),
        tags=tags,
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"{dry_run}Mailchimp history since {plan.since}" + (f" ({target.instance})" if target.instance else ""),
        description=(
            f"{len(keys)} campaign(s) of {source} sent since {plan.since} (campaign-pipeline backfill"
            + (" --preview: writes nothing to Salesforce or the ledger" if preview else "")
            + ")"
        ),
        run_config=None,
    )
    instance.add_backfill(backfill)
    plan.backfill_id = backfill.backfill_id
    return plan


def format_plan(plan: HistoryPlan) -> str:
    verb = "would queue" if plan.list_only else "queued as a dry run" if plan.preview else "queued"
    profile = f" for sync profile {plan.instance}" if plan.instance else ""
    lines = [f"Campaigns of {plan.source} sent since {plan.since}{profile}: {verb} {len(plan.queued)}"]
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
        dry_run = (
            f" (dry runs, run tag {PREVIEW_TAG}=true: they show would_create / would_update per campaign and write "
            "nothing to Salesforce or the ledger)"
            if plan.preview
            else ""
        )
        lines.append(
            f"backfill {plan.backfill_id}: {len(plan.queued)} campaign(s) in {plan.runs} run(s) of at most "
            f"{CAMPAIGN_BACKFILL_POLICY.max_partitions_per_run}{dry_run}; the Dagster daemon (`dagster dev`) launches "
            "them (Overview -> Backfills in the UI)"
        )
    elif plan.list_only and plan.queued:
        lines.append(
            f"--list: nothing added or launched (without --list: {plan.runs} run(s) of at most "
            f"{CAMPAIGN_BACKFILL_POLICY.max_partitions_per_run}; with --preview they are dry runs)"
        )
    return "\n".join(lines)
