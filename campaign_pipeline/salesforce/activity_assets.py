"""Desired-record assets of modes activity, campaign_and_activity and notes: sf_tasks, sf_notes, sf_attachments.

Their frames are built by the mode table (``campaign_pipeline.modes``), which also says which mode has which of
them; ``salesforce_sync`` writes them through the same ledger, diff, batching and error handling as Campaigns.
"""

import re
from typing import Any

import dagster as dg
import pandas as pd
from simple_salesforce.format import format_soql

from campaign_pipeline.asset_metadata import preview_table
from campaign_pipeline.core.activity_records import (
    ATTACHMENT,
    ATTACHMENT_MAX_BYTES,
    attachment_bytes,
)
from campaign_pipeline.core.diff import RESULT_ERROR, RESULT_OK, RESULT_PENDING, diff_against_ledger
from campaign_pipeline.core.salesforce_records import APPROXIMATE_SEND_NOTE
from campaign_pipeline.mailchimp.partitions import campaign_asset
from campaign_pipeline.modes import attachments_enabled, build_desired_frame, mode_spec, task_kind
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import (
    RecordKind,
)
from campaign_pipeline.salesforce.ledger import RESULT_COLUMNS, SyncLedger, ledger_scope
from campaign_pipeline.salesforce.resource import SalesforceClient, SalesforceResource
from campaign_pipeline.salesforce.soql import chunk_for_in_list
from campaign_pipeline.storage.database import get_engine

SALESFORCE_GROUP = "salesforce"
# Every Task description ends with this line; it finds the Task of a key after a crash when no external ID exists.
_EVENT_LINE = re.compile(r"^Mailchimp event: (\S+)\s*$", re.MULTILINE)


def _table(frame: pd.DataFrame, columns: list[str] | None = None) -> dg.MarkdownMetadataValue:
    # Task descriptions and note bodies are long: cut cells so the preview stays a table.
    return preview_table(frame, columns=columns, max_chars=80)


def _common_metadata(desired: pd.DataFrame) -> dict[str, Any]:
    approximate = int((~desired["sent_at_is_exact"].astype(bool)).sum())
    metadata: dict[str, Any] = {
        "dagster/row_count": len(desired),
        "truncated": int((desired["truncated_fields"] != "").sum()),
        "rejected": int(desired["reject_reason"].notna().sum()),
        "approximate_send_times": approximate,
    }
    if approximate:
        metadata["note"] = APPROXIMATE_SEND_NOTE
    if metadata["rejected"]:
        metadata["reject_reasons"] = _table(desired[desired["reject_reason"].notna()], ["sync_key", "reject_reason"])
    return metadata


def recover_pending_tasks(client: SalesforceClient, ledger: SyncLedger, tasks: pd.DataFrame, kind: RecordKind) -> int:
    """After a crash, find the Tasks a run created but never recorded, and give their keys the Salesforce Id.

    Only for orgs without a Task external-ID field (with one, creates are upserts and safe to repeat). A Task's
    description holds its key on a line of its own, but long text cannot be filtered in SOQL: read the persons'
    Tasks and match the key in Python. A found Task holds what the interrupted run sent, so it keeps that run's
    content hash (unchanged if nothing moved since). Keys not found are marked failed without an Id, so the engine
    creates them once. Returns the number of Tasks adopted.
    """
    if kind.external_id_field or tasks.empty:
        return 0
    campaign_ids = sorted(tasks["campaign_id"].dropna().unique().tolist())
    known = ledger.load(kind.name, campaign_ids)
    pending = known[(known["last_result"] == RESULT_PENDING) & known["salesforce_id"].isna()]
    pending = pending.merge(tasks[["sync_key", "WhoId"]], on="sync_key", how="inner")
    if pending.empty:
        return 0
    template = "SELECT Id, Description FROM Task WHERE WhoId IN {}"
    found: list[dict] = []
    for chunk in chunk_for_in_list(sorted(pending["WhoId"].dropna().unique()), template):
        found += client.query_all(format_soql(template, chunk))
    existing = pd.DataFrame(found, columns=["Id", "Description"])
    existing["sync_key"] = existing["Description"].astype(str).str.extract(_EVENT_LINE, expand=False)
    # Several Tasks for one key (an older duplicate): keep the oldest Id, deterministically.
    id_of = existing.dropna(subset=["sync_key"]).sort_values("Id").drop_duplicates("sync_key").set_index("sync_key")
    salesforce_id = pending["sync_key"].map(id_of["Id"])
    found_mask = salesforce_id.notna()
    results = pd.DataFrame(
        {
            "sync_key": pending["sync_key"],
            "campaign_id": pending["campaign_id"],
            "salesforce_id": salesforce_id.astype(object),
            "content_hash": pending["content_hash"].where(found_mask, pd.NA),
            "last_result": [RESULT_OK if hit else RESULT_ERROR for hit in found_mask],
            "error_code": [pd.NA if hit else "NOT_CREATED" for hit in found_mask],
            "error_message": [
                pd.NA if hit else "an interrupted run did not create this Task; it is created on this run"
                for hit in found_mask
            ],
        }
    )
    ledger.record_results(kind.name, results[list(RESULT_COLUMNS)])
    return int(found_mask.sum())


def build_sf_tasks(profile: SyncProfile) -> dg.AssetsDefinition:
    url_target = (
        f"Task.{profile.field_mapping.task_url_field}" if profile.field_mapping.task_url_field else "Description"
    )
    per_url = profile.activity.one_task_per_url

    @campaign_asset(
        name="sf_tasks",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "pandas"},
        ins={
            "raw_email_events": dg.AssetIn(),
            "member_statuses": dg.AssetIn(),
            "salesforce_matches": dg.AssetIn(),
            "mailchimp_campaign_report": dg.AssetIn(),
        },
        description=(
            "The Task each open and click of a matched member should be on its Lead/Contact: Status Completed, "
            "ActivityDate the event's date, TaskSubtype Email, the event's time in Description and the clicked URL "
            f"in {url_target}. "
            + ("Each clicked URL is one Task (repeat clicks counted in it). " if per_url else "")
            + ("Each Task points at the Campaign (WhatId). " if mode_spec(profile).tasks_on_campaign else "")
            + "Keyed by the Mailchimp event identity, so a re-run, an overlapping fetch or a crash never duplicates "
            "a Task."
        ),
    )
    def sf_tasks(
        context: dg.AssetExecutionContext,
        salesforce: SalesforceResource,
        raw_email_events: pd.DataFrame,
        member_statuses: pd.DataFrame,
        salesforce_matches: pd.DataFrame,
        mailchimp_campaign_report: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile,
            "sf_tasks",
            {
                "raw_email_events": raw_email_events,
                "member_statuses": member_statuses,
                "salesforce_matches": salesforce_matches,
                "mailchimp_campaign_report": mailchimp_campaign_report,
            },
        )
        kind = task_kind(profile)
        ledger = SyncLedger(get_engine(), scope=ledger_scope(context.assets_def.keys))
        adopted = 0
        if not profile.sync.preview_only and not kind.external_id_field:
            known = ledger.load(kind.name, list(context.partition_keys))
            if ((known["last_result"] == RESULT_PENDING) & known["salesforce_id"].isna()).any():
                with salesforce.open_client(
                    api_call_budget=profile.sync.api_call_budget,
                    limit_usage_stop_fraction=profile.sync.limit_usage_stop_fraction,
                    log=context.log,
                ) as client:
                    adopted = recover_pending_tasks(client, ledger, desired, kind)
                context.log.info(f"{adopted} Task(s) of an interrupted run found in Salesforce and adopted")
        subjects = desired["Subject"].str.split(" ").str[0].value_counts().to_dict() if len(desired) else {}
        metadata = _common_metadata(desired)
        metadata.update(
            {
                "tasks": len(desired),
                "by_response": dg.MetadataValue.json({str(k): int(v) for k, v in subjects.items()}),
                "matched_people": int(desired["WhoId"].nunique()),
                "adopted_after_interrupted_run": adopted,
                "preview": _table(desired, ["sync_key", "WhoId", "Subject", "ActivityDate"]),
            }
        )
        return dg.Output(desired, metadata=metadata)

    return sf_tasks


def build_sf_notes(profile: SyncProfile) -> dg.AssetsDefinition:
    @campaign_asset(
        name="sf_notes",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "pandas"},
        ins={
            "member_statuses": dg.AssetIn(),
            "raw_email_events": dg.AssetIn(),
            "salesforce_matches": dg.AssetIn(),
            "mailchimp_campaign_report": dg.AssetIn(),
        },
        description=(
            "The Note each matched Lead/Contact should carry for the campaign: Title (80 characters) names the "
            "campaign, Body (32,000) says what was sent when, opens, clicks with their URLs, bounce and "
            "unsubscribe. Keyed by campaign + person, so new activity updates the Note in place."
        ),
    )
    def sf_notes(
        context: dg.AssetExecutionContext,
        member_statuses: pd.DataFrame,
        raw_email_events: pd.DataFrame,
        salesforce_matches: pd.DataFrame,
        mailchimp_campaign_report: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile,
            "sf_notes",
            {
                "member_statuses": member_statuses,
                "raw_email_events": raw_email_events,
                "salesforce_matches": salesforce_matches,
                "mailchimp_campaign_report": mailchimp_campaign_report,
            },
        )
        metadata = _common_metadata(desired)
        metadata.update(
            {
                "notes": len(desired),
                "body_characters": int(desired["Body"].str.len().sum()) if len(desired) else 0,
                "preview": _table(desired, ["sync_key", "ParentId", "Title"]),
            }
        )
        return dg.Output(desired, metadata=metadata)

    return sf_notes


def build_sf_attachments(profile: SyncProfile) -> dg.AssetsDefinition:
    @campaign_asset(
        name="sf_attachments",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "html"},
        ins={
            "campaign_content": dg.AssetIn(),
            "member_statuses": dg.AssetIn(),
            "salesforce_matches": dg.AssetIn(),
            "mailchimp_campaign_report": dg.AssetIn(),
        },
        description=(
            "The campaign's sent email (HTML) attached to each matched Lead/Contact for compliance records "
            f"(text/html). Emails over {ATTACHMENT_MAX_BYTES} bytes (25 MB) are refused with the reason, never "
            "truncated. Attachments use the org's file storage: metadata shows the bytes this run will write."
        ),
    )
    def sf_attachments(
        context: dg.AssetExecutionContext,
        campaign_content: pd.DataFrame,
        member_statuses: pd.DataFrame,
        salesforce_matches: pd.DataFrame,
        mailchimp_campaign_report: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile,
            "sf_attachments",
            {
                "campaign_content": campaign_content,
                "member_statuses": member_statuses,
                "salesforce_matches": salesforce_matches,
                "mailchimp_campaign_report": mailchimp_campaign_report,
            },
        )
        if not attachments_enabled(profile):
            context.log.info("Attachments are turned off in the sync profile: no sent email is attached")
        campaign_ids = sorted(desired["campaign_id"].unique().tolist())
        to_write = diff_against_ledger(
            desired,
            SyncLedger(get_engine(), scope=ledger_scope(context.assets_def.keys)).load(ATTACHMENT, campaign_ids),
        )
        writing = to_write[to_write["action"].isin(["create", "update"])]
        for reason in desired["reject_reason"].dropna().unique():
            context.log.warning(reason)
        metadata = _common_metadata(desired)
        metadata.update(
            {
                "attachments": len(desired),
                "attachment_bytes": attachment_bytes(desired),
                "attachment_bytes_to_write": attachment_bytes(writing),
                "attachments_to_write": len(writing),
                "preview": _table(desired, ["sync_key", "ParentId", "Name", "reject_reason"]),
            }
        )
        return dg.Output(desired, metadata=metadata)

    return sf_attachments
