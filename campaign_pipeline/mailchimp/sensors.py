"""The sensor that finds new Mailchimp sends, adds their campaign partitions and requests their runs."""

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Union

import dagster as dg
import pandas as pd

from campaign_pipeline.core.campaign_keys import campaign_partition_key, is_bare_campaign_id, keys_by_campaign_id
from campaign_pipeline.core.events import is_valid_campaign_id
from campaign_pipeline.mailchimp.campaigns import SentCampaign
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.mailchimp.resource import MailchimpResource

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# What the sensor and schedule can target: a job (define_asset_job gives an unresolved one),
# an asset selection, or a job's name.
RunTarget = Union[dg.JobDefinition, "UnresolvedAssetJobDefinition", dg.AssetSelection, str]

DEFAULT_LOOKBACK_DAYS = 7
# Sends listed again on the next tick: a campaign whose send_time is written late (or equal to the
# newest one seen) is still picked up; the ids in the cursor keep it from being requested twice.
RELIST_SLACK = pd.Timedelta(hours=1)
SENSOR_NAME = "mailchimp_new_sends_sensor"


@dataclass
class NewSendsCursor:
    """The newest send time seen and the ids seen at or after (newest - slack), for one Mailchimp account.

    ``source`` is the account the cursor was made for (``MailchimpResource.source_identity``): a cursor of
    another account (the sandbox's, whose clock runs ahead) is never reused. ``keys_migrated`` says the
    bare-id partitions of before dated keys were replaced once (``migrate_bare_keys``), so the full listing that
    takes is not repeated for ids Mailchimp no longer lists.
    """

    max_send_time: pd.Timestamp | None = None
    recent_ids: list[str] = field(default_factory=list)
    source: str | None = None
    keys_migrated: bool = False

    @classmethod
    def parse(cls, raw: str | None) -> "NewSendsCursor":
        if not raw:
            return cls()
        stored = json.loads(raw)
        max_send_time = stored.get("max_send_time")
        return cls(
            max_send_time=pd.Timestamp(max_send_time).tz_convert("UTC") if max_send_time else None,
            recent_ids=list(stored.get("recent_ids", [])),
            source=stored.get("source"),
            keys_migrated=bool(stored.get("keys_migrated", False)),
        )

    def serialize(self) -> str:
        return json.dumps(
            {
                "max_send_time": self.max_send_time.isoformat() if self.max_send_time is not None else None,
                "recent_ids": sorted(self.recent_ids),
                "source": self.source,
                "keys_migrated": self.keys_migrated,
            }
        )

    def advanced(self, campaigns: list[SentCampaign], listed_since: pd.Timestamp | None = None) -> "NewSendsCursor":
        """The cursor after a tick that listed `campaigns` sent after `listed_since`.

        A first tick that finds nothing still records where it looked from, so the next tick
        lists from there rather than from a lookback that has moved on.
        """
        send_times = [c.send_time for c in campaigns if c.send_time is not None]
        if self.max_send_time is not None:
            send_times.append(self.max_send_time)
        if not send_times:
            if listed_since is None:
                return self
            return replace(self, max_send_time=listed_since, recent_ids=[])
        newest = max(send_times)
        keep_from = newest - RELIST_SLACK
        recent = {c.id for c in campaigns if c.send_time is not None and c.send_time >= keep_from}
        # Ids from earlier ticks stay while they are inside the slack window of the new maximum.
        if self.max_send_time is not None and self.max_send_time >= keep_from:
            recent.update(self.recent_ids)
        return replace(self, max_send_time=newest, recent_ids=sorted(recent))


class SourceStateMismatch(RuntimeError):
    """The instance's campaign state belongs to another Mailchimp account than the one now configured."""


def first_tick_horizon(now: pd.Timestamp, lookback_days: int, history_since: pd.Timestamp | None) -> pd.Timestamp:
    """Where the first tick lists from: the profile's ``history_since`` when set, else ``lookback_days`` ago."""
    return history_since if history_since is not None else now - pd.Timedelta(days=lookback_days)


def new_sends(
    campaigns: list[SentCampaign],
    cursor: NewSendsCursor,
    now: pd.Timestamp,
    lookback_days: int,
    history_since: pd.Timestamp | None = None,
) -> list[SentCampaign]:
    """Campaigns not seen before; on the first tick (empty cursor) only those sent since the horizon."""
    if cursor.max_send_time is None:
        horizon = first_tick_horizon(now, lookback_days, history_since)
        return [c for c in campaigns if c.send_time is not None and c.send_time >= horizon]
    seen = set(cursor.recent_ids)
    return [
        c
        for c in campaigns
        if c.send_time is not None and c.id not in seen and c.send_time >= cursor.max_send_time - RELIST_SLACK
    ]


def sent_campaign_key(campaign: SentCampaign) -> str:
    """The dated partition key of a sent campaign (``core.campaign_keys.campaign_partition_key``)."""
    if campaign.send_time is None:
        raise ValueError(f"campaign {campaign.id} has no send time: it is not a partition yet")
    return campaign_partition_key(campaign.send_time.to_pydatetime(), campaign.title, campaign.id)


def dated_keys_for_bare(existing: list[str], listed: list[SentCampaign]) -> dict[str, str]:
    """Bare-id partition key -> its dated key, for the bare keys whose campaign ``listed`` holds with a send time.

    A campaign that already has a dated key keeps it (no second partition); ids Mailchimp no longer lists keep
    their bare key, which still resolves to the campaign everywhere.
    """
    dated = {campaign_id for campaign_id, key in keys_by_campaign_id(existing).items() if not is_bare_campaign_id(key)}
    found = {c.id: c for c in listed if c.send_time is not None}
    return {
        key: sent_campaign_key(found[key])
        for key in existing
        if is_bare_campaign_id(key) and key in found and key not in dated
    }


def build_mailchimp_sensor(
    target: "RunTarget",
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    minimum_interval_seconds: int = 300,
    name: str = SENSOR_NAME,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    partitions_def: dg.DynamicPartitionsDefinition = mailchimp_campaigns,
    list_id: str | None = None,
    history_since: pd.Timestamp | None = None,
) -> dg.SensorDefinition:
    """A sensor over `target` (the lead's per-campaign job or an asset selection).

    Each tick lists campaigns sent since the cursor (minus a slack) to the audience `list_id` (None = all),
    adds a partition of `partitions_def` for each new one (keyed `<send date>_<title>_<id>`) and requests its run,
    all in one SensorResult so a partition is never requested before it exists. The first tick only looks back
    `lookback_days`, or to `history_since` (the profile's mailchimp.history_since) when given. Partitions of the
    old bare-id shape are replaced by dated keys once (added first, then deleted); stores key on campaign ids,
    so their data and ledger rows stay theirs and nothing is synced again.
    """
    partitions_name = partitions_def.name
    if not partitions_name:
        raise ValueError("the campaign partitions must be named dynamic partitions")
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be 0 or more, got {lookback_days}")

    @dg.sensor(
        name=name,
        target=target,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Finds new Mailchimp sends (regular campaigns and automation emails), adds their "
            f"{partitions_def.name} partitions and requests their runs. The first tick looks back "
            + (f"to {history_since.date().isoformat()}." if history_since is not None else f"{lookback_days} days.")
        ),
    )
    def mailchimp_new_sends_sensor(
        context: dg.SensorEvaluationContext, mailchimp: MailchimpResource
    ) -> dg.SensorResult:
        source = mailchimp.source_identity()
        cursor = NewSendsCursor.parse(context.cursor)
        if cursor.source is not None and cursor.source != source:
            held = context.instance.get_dynamic_partitions(partitions_name)
            if held:
                raise SourceStateMismatch(
                    f"This instance holds {len(held)} {partitions_name} partitions found in {cursor.source}, but "
                    f"the source is now {source} ({mailchimp.source_description}). Refusing to mix them: run "
                    "`campaign-pipeline sandbox reset` (deletes the sandbox's partitions, cursors and ledger rows), "
                    "point CAMPAIGN_PIPELINE_DATABASE_URL / CAMPAIGN_PIPELINE_DATA_DIR at a fresh store, or unset "
                    "the credentials to go back to the sandbox."
                )
            context.log.warning(
                f"The sensor's cursor belongs to {cursor.source}, not {source}: it is not reused; "
                "listing afresh from the first tick's horizon"
            )
            cursor = NewSendsCursor()
        cursor = replace(cursor, source=source)
        now = mailchimp.now()
        since = (
            first_tick_horizon(now, lookback_days, history_since)
            if cursor.max_send_time is None
            else cursor.max_send_time - RELIST_SLACK
        )
        context.log.info(f"{mailchimp.source_description}; listing sends since {since.isoformat()}")
        listed = mailchimp.list_sent_campaigns(since_send_time=since, list_id=list_id)
        usable = [c for c in listed if is_valid_campaign_id(c.id)]
        for rejected in set(c.id for c in listed) - set(c.id for c in usable):
            context.log.warning(f"Skipping campaign id {rejected!r}: not a safe partition key")
        fresh = new_sends(usable, cursor, now, lookback_days, history_since)
        existing = list(context.instance.get_dynamic_partitions(partitions_name))
        next_cursor = cursor.advanced(usable, listed_since=since)
        renamed: dict[str, str] = {}
        if not cursor.keys_migrated:
            if any(is_bare_campaign_id(key) for key in existing):
                # Once per instance: the bare keys' campaigns may be older than any lookback, so list them all.
                renamed = dated_keys_for_bare(existing, mailchimp.list_sent_campaigns(list_id=list_id))
                context.log.info(f"Replacing {len(renamed)} bare campaign-id partitions by dated keys")
            next_cursor = replace(next_cursor, keys_migrated=True)
        key_of = keys_by_campaign_id([renamed.get(key, key) for key in existing])
        new_keys = {c.id: sent_campaign_key(c) for c in fresh if c.id not in key_of}
        key_of.update(new_keys)
        # Added oldest first, so the partitions' creation order is their send order too.
        to_add = sorted({*renamed.values(), *new_keys.values()})
        partition_requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        if to_add:
            partition_requests.append(partitions_def.build_add_request(to_add))
        if renamed:
            # After the add: the daemon applies the requests in order, so a campaign is never without a partition.
            partition_requests.append(partitions_def.build_delete_request(sorted(renamed)))
        if not fresh:
            return dg.SensorResult(
                skip_reason="No new Mailchimp sends",
                dynamic_partitions_requests=partition_requests,
                cursor=next_cursor.serialize(),
            )
        return dg.SensorResult(
            dynamic_partitions_requests=partition_requests,
            run_requests=[
                dg.RunRequest(
                    # By campaign id, so a campaign whose key changed shape is never requested twice.
                    run_key=f"new-send:{c.id}",
                    partition_key=key_of[c.id],
                    tags={"mailchimp/campaign_type": c.type, "mailchimp/trigger": "new_send"},
                )
                for c in fresh
            ],
            cursor=next_cursor.serialize(),
        )

    return mailchimp_new_sends_sensor
