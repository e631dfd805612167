"""Per-campaign Mailchimp assets: landed events, recipients, Mailchimp's own report and the sent HTML."""

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from campaign_pipeline.asset_metadata import (
    RUN_WIDE_CALLS,
    counts_table,
    metadata_per_campaign,
    metadata_per_partition,
    preview_table,
)
from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.core.campaign_types import (
    campaign_type_label,
    canonical_campaign_type,
    is_automation_type,
    is_known_campaign_type,
)
from campaign_pipeline.core.events import (
    bot_opens_filtered,
    parse_campaign_report,
)
from campaign_pipeline.frame_types import (
    CampaignRecipientsType,
    MailchimpCampaignReportType,
    RawEmailEventsType,
)
from campaign_pipeline.mailchimp.landing import (
    LANDED_EVENTS_TABLE,
    PIPELINE_SCHEMA,
    RECIPIENTS_TABLE,
    fetch_and_land_events,
    fetch_and_land_recipients,
)
from campaign_pipeline.mailchimp.landing_io import LandingIOManager
from campaign_pipeline.mailchimp.partitions import campaign_asset
from campaign_pipeline.mailchimp.resource import MailchimpResource, checked_campaign_id
from campaign_pipeline.stores import LandingStoreResource

MAILCHIMP_GROUP = "mailchimp"
MAILCHIMP_POOL = "mailchimp"


def _campaign_ids(context: dg.AssetExecutionContext) -> list[str]:
    return [checked_campaign_id(campaign_id_from_key(key)) for key in context.partition_keys]


def _run_calls(context: dg.AssetExecutionContext, api_calls: int) -> dict[str, Any]:
    """The step's Mailchimp calls; in a batched run they serve all its campaigns, and say so."""
    if len(context.partition_keys) <= 1:
        return {"api_calls": api_calls}
    return {"api_calls": api_calls, "api_calls_are": RUN_WIDE_CALLS}


def _source_metadata(mailchimp: MailchimpResource, context: dg.AssetExecutionContext) -> dict[str, Any]:
    context.log.info(mailchimp.source_description)
    return {"mailchimp_source": mailchimp.source_description}


@campaign_asset(
    after_preflight=True,
    group_name=MAILCHIMP_GROUP,
    pool=MAILCHIMP_POOL,
    io_manager_def=LandingIOManager(landing_store=LandingStoreResource()),
    metadata={"dagster/column_schema": RawEmailEventsType.metadata["schema"]},
    kinds={"mailchimp", "postgres"},
    description=(
        "Every open, click, bounce and unsubscribe of the campaign ever landed. Each run fetches email "
        "activity since the campaign's cursor minus an overlap, plus all unsubscribes, and lands new events "
        "in campaign_pipeline.landed_email_events keyed by event identity; landed events are never deleted, "
        "so members deleted in Mailchimp keep their history. Malformed records go to "
        "campaign_pipeline.quarantined_records with the reason. That table is this asset's storage: downstream "
        "assets read their campaign's rows from it (no second copy)."
    ),
)
def raw_email_events(
    context: dg.AssetExecutionContext, mailchimp: MailchimpResource, landing_store: LandingStoreResource
) -> dg.MaterializeResult:
    store = landing_store.open()
    landed: dict[str, dict[str, Any]] = {}
    for campaign_id in _campaign_ids(context):
        sync = fetch_and_land_events(mailchimp, store, campaign_id)
        own: dict[str, Any] = {
            "new_events": sync.landing.new_events,
            "total_events": sync.landing.total_events,
            "quarantined_new": sync.landing.new_quarantined,
            "quarantined_total": sync.landing.total_quarantined,
            "pages": sync.calls.pages,
            "api_calls": sync.calls.api_calls,
            "events_filtered": 0,
            "cursor": sync.landing.cursor.isoformat() if sync.landing.cursor is not None else "none",
        }
        if mailchimp.filter_bots:
            # What the filter removed, as Mailchimp's report counts it (one call per campaign, only when filtering).
            own["events_filtered"] = bot_opens_filtered(mailchimp.fetch_report(campaign_id))
            own["api_calls"] += 1
        landed[campaign_id] = own
        context.log.info(
            f"campaign {campaign_id}: since={sync.since.isoformat() if sync.since is not None else 'beginning'}, "
            f"{sync.fetched_events} fetched, {sync.landing.new_events} new, {sync.landing.total_events} landed, "
            f"{sync.landing.new_quarantined} newly quarantined, {sync.calls.api_calls} API calls"
        )
    quarantined = pd.concat([store.quarantined(campaign_id) for campaign_id in landed], ignore_index=True)
    if len(quarantined):
        context.log.warning(
            f"{len(quarantined)} malformed Mailchimp record(s) kept out of the events, see "
            f"campaign_pipeline.quarantined_records: {', '.join(sorted(set(quarantined['reason'])))}"
        )

    def describe(campaign_ids: list[str]) -> dict[str, Any]:
        counts = {name: sum(landed[c][name] for c in campaign_ids) for name in _EVENT_COUNTS}
        metadata: dict[str, Any] = {
            **counts,
            "cursor": landed[campaign_ids[0]]["cursor"],
            "dagster/row_count": counts["total_events"],
            "actions": counts_table(store.value_counts(LANDED_EVENTS_TABLE, "action", campaign_ids), "action"),
            "preview": preview_table(store.preview(LANDED_EVENTS_TABLE, campaign_ids)),
        }
        own_quarantined = quarantined[quarantined["campaign_id"].isin(campaign_ids)]
        if len(own_quarantined):
            metadata["quarantined_reasons"] = counts_table(own_quarantined["reason"].value_counts().to_dict(), "reason")
            metadata["quarantined_preview"] = preview_table(
                own_quarantined[["campaign_id", "source", "reason", "record"]]
            )
        return metadata

    run_wide = {
        **_source_metadata(mailchimp, context),
        "bot_filter": "on: filter_bots=true, bot and privacy-proxy activity left out"
        if mailchimp.filter_bots
        else "off",
        "stored_in": f"{PIPELINE_SCHEMA}.{LANDED_EVENTS_TABLE}",
    }
    return dg.MaterializeResult(metadata=metadata_per_campaign(context, describe, run_wide))


_EVENT_COUNTS = (
    "new_events",
    "total_events",
    "quarantined_new",
    "quarantined_total",
    "pages",
    "api_calls",
    "events_filtered",
)


@campaign_asset(
    group_name=MAILCHIMP_GROUP,
    pool=MAILCHIMP_POOL,
    io_manager_def=LandingIOManager(landing_store=LandingStoreResource()),
    metadata={"dagster/column_schema": CampaignRecipientsType.metadata["schema"]},
    kinds={"mailchimp", "postgres"},
    description=(
        "Who the campaign was sent to (Mailchimp sent-to), one row per member, with the send status "
        "(sent / hard / soft bounce). Mailchimp gives no per-recipient send time: sent_at is the campaign's "
        "send time, and for automation emails it is approximate (sent_at_is_exact = false). Stored in "
        "campaign_pipeline.landed_recipients (send time once per campaign in landed_campaign_sends): downstream "
        "assets read their campaign's rows from there."
    ),
)
def campaign_recipients(
    context: dg.AssetExecutionContext,
    mailchimp: MailchimpResource,
    landing_store: LandingStoreResource,
    mailchimp_campaign_report: pd.DataFrame,
) -> dg.MaterializeResult:
    store = landing_store.open()
    # The report asset already fetched /reports/{id} this run: its row says whether sent-to can have changed.
    reports = mailchimp_campaign_report.set_index("campaign_id")
    syncs, calls = {}, {}
    for campaign_id in _campaign_ids(context):
        before = mailchimp.stats.snapshot()
        syncs[campaign_id] = fetch_and_land_recipients(
            mailchimp, store, campaign_id, reports.loc[campaign_id].to_dict() if campaign_id in reports.index else None
        )
        calls[campaign_id] = mailchimp.stats.since(before)
        if not syncs[campaign_id].fetched_sent_to:
            context.log.info(f"campaign {campaign_id}: sent-to already landed in full, not re-read")
    if any(sync.is_automation for sync in syncs.values()):
        context.log.warning(
            "Automation email: sent_at is the email's send time, approximate per recipient (sent_at_is_exact = false)"
        )

    def describe(campaign_ids: list[str]) -> dict[str, Any]:
        send_status = store.value_counts(RECIPIENTS_TABLE, "send_status", campaign_ids)
        own = [syncs[c] for c in campaign_ids]
        return {
            "dagster/row_count": sum(send_status.values()),
            "send_status": counts_table(send_status, "send_status"),
            "sent_at_is_exact": not any(sync.is_automation for sync in own),
            "sent_to_fetched": sum(sync.fetched_sent_to for sync in own),
            "new_members": sum(sync.new_members for sync in own),
            "quarantined_new": sum(sync.new_quarantined for sync in own),
            "pages": sum(calls[c].pages for c in campaign_ids),
            "api_calls": sum(calls[c].api_calls for c in campaign_ids),
            "preview": preview_table(store.preview(RECIPIENTS_TABLE, campaign_ids)),
        }

    run_wide = {**_source_metadata(mailchimp, context), "stored_in": f"{PIPELINE_SCHEMA}.{RECIPIENTS_TABLE}"}
    return dg.MaterializeResult(metadata=metadata_per_campaign(context, describe, run_wide))


@campaign_asset(
    after_preflight=True,
    group_name=MAILCHIMP_GROUP,
    pool=MAILCHIMP_POOL,
    dagster_type=MailchimpCampaignReportType,
    kinds={"mailchimp"},
    description=(
        "Mailchimp's own campaign report (reports/{id}): sends, opens, clicks, bounces, unsubscribes, and the "
        "totals only Mailchimp has (forwards, abuse reports). Used to reconcile totals computed from events."
    ),
)
def mailchimp_campaign_report(
    context: dg.AssetExecutionContext, mailchimp: MailchimpResource
) -> dg.Output[pd.DataFrame]:
    metadata: dict[str, Any] = _source_metadata(mailchimp, context)
    before = mailchimp.stats.snapshot()
    reports = pd.concat(
        [
            parse_campaign_report(mailchimp.fetch_report(campaign_id), human_opens_only=mailchimp.filter_bots)
            for campaign_id in _campaign_ids(context)
        ],
        ignore_index=True,
    )
    reports = with_rss_campaigns(with_automation_workflows(reports, mailchimp), mailchimp)
    calls = mailchimp.stats.since(before)

    def describe(own: pd.DataFrame) -> dict[str, Any]:
        first = own.iloc[0]
        return {
            "dagster/row_count": len(own),
            "emails_sent": int(own["emails_sent"].sum()),
            "unique_opens": int(own["unique_opens"].sum()),
            "unique_subscriber_clicks": int(own["unique_subscriber_clicks"].sum()),
            "campaign_type": str(first["campaign_type"]),
            "campaign_type_label": campaign_type_label(first["campaign_type"]),
            "preview": preview_table(own),
        }

    run_wide = {
        **metadata,
        "opens_counted": "human only (proxy-excluded, filter_bots)" if mailchimp.filter_bots else "all opens",
        **_run_calls(context, calls.api_calls),
    }
    metadata = metadata_per_partition(context, reports, describe, run_wide=run_wide)
    for campaign_id, campaign_type in zip(reports["campaign_id"], reports["campaign_type"], strict=True):
        if not is_known_campaign_type(campaign_type):
            context.log.warning(
                f"campaign {campaign_id}: Mailchimp campaign type {campaign_type!r} is not one this pipeline knows; "
                "landed and synced like a regular campaign"
            )
    return dg.Output(reports, metadata=metadata)


def with_automation_workflows(reports: pd.DataFrame, mailchimp: MailchimpResource) -> pd.DataFrame:
    """The reports with their automation workflow (id, title) for automation emails: the campaign hierarchy's key.

    Only a batch holding automation emails asks Mailchimp (/automations and each workflow's emails).
    """
    automation = reports["campaign_type"].map(is_automation_type).astype(bool)
    return _with_parents(
        reports, automation, ("automation_id", "automation_title"), lambda _ids: mailchimp.automation_workflows()
    )


def with_rss_campaigns(reports: pd.DataFrame, mailchimp: MailchimpResource) -> pd.DataFrame:
    """The reports with the RSS campaign (id, title) of each RSS send: the key of its parent in the hierarchy.

    Only a batch holding RSS sends asks Mailchimp (each send's campaign record, then each RSS campaign's).
    """
    rss = reports["campaign_type"].map(canonical_campaign_type).eq("rss")
    return _with_parents(reports, rss, ("rss_campaign_id", "rss_campaign_title"), mailchimp.rss_campaigns)


def _with_parents(
    reports: pd.DataFrame,
    children: pd.Series,
    columns: tuple[str, str],
    parents_of: Callable[[list[str]], Mapping[str, tuple[str, str | None]]],
) -> pd.DataFrame:
    """``reports`` with two more columns, the (id, title) of each child campaign's parent (NA for the others, and
    a title Mailchimp does not give); ``parents_of`` (the child campaign ids) is asked only when there are children."""
    reports = reports.copy()
    id_column, title_column = columns
    for column in columns:
        reports[column] = pd.Series(pd.NA, index=reports.index, dtype=object)
    if not children.any():
        return reports
    found = parents_of([str(campaign_id) for campaign_id in reports.loc[children, "campaign_id"]])
    for index in reports.index[children]:
        parent = found.get(str(reports.at[index, "campaign_id"]))
        if parent is not None:
            reports.at[index, id_column], title = parent
            reports.at[index, title_column] = pd.NA if title is None else title
    return reports


@campaign_asset(
    after_preflight=True,
    group_name=MAILCHIMP_GROUP,
    pool=MAILCHIMP_POOL,
    kinds={"mailchimp", "html"},
    description="The campaign's sent email as HTML (campaigns/{id}/content), attached to Notes for compliance records.",
)
def campaign_content(context: dg.AssetExecutionContext, mailchimp: MailchimpResource) -> dg.Output[pd.DataFrame]:
    metadata: dict[str, Any] = _source_metadata(mailchimp, context)
    before = mailchimp.stats.snapshot()
    rows = [
        {"campaign_id": campaign_id, "html": mailchimp.fetch_content_html(campaign_id)}
        for campaign_id in _campaign_ids(context)
    ]
    content = pd.DataFrame(rows, columns=["campaign_id", "html"]).astype(object)
    calls = mailchimp.stats.since(before)

    def describe(own: pd.DataFrame) -> dict[str, Any]:
        return {
            "dagster/row_count": len(own),
            "html_bytes": int(own["html"].map(lambda html: len(html.encode("utf-8"))).sum()),
        }

    metadata = metadata_per_partition(
        context, content, describe, run_wide={**metadata, **_run_calls(context, calls.api_calls)}
    )
    return dg.Output(content, metadata=metadata)


MAILCHIMP_ASSETS = [raw_email_events, campaign_recipients, mailchimp_campaign_report, campaign_content]
