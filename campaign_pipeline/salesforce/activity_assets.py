"""Desired-record assets of modes activity, campaign_and_activity and notes: sf_tasks, sf_notes, sf_attachments.

Their frames are built by the mode table (``campaign_pipeline.modes``), which also says which mode has which of
them; ``salesforce_sync`` writes them through the same ledger, diff, batching and error handling as Campaigns.
"""

from typing import Any

import dagster as dg
import pandas as pd

from campaign_pipeline.asset_metadata import counts_table, metadata_per_partition, preview_table
from campaign_pipeline.core.activity_records import ATTACHMENT_MAX_BYTES, attachment_bytes
from campaign_pipeline.core.content_records import FILE_MAX_BYTES, file_bytes
from campaign_pipeline.core.diff import diff_against_ledger
from campaign_pipeline.core.salesforce_records import APPROXIMATE_SEND_NOTE
from campaign_pipeline.mailchimp.partitions import campaign_asset
from campaign_pipeline.modes import (
    attachment_kind,
    attachments_enabled,
    build_desired_frame,
    enhanced_notes,
    mode_spec,
)
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.assets import SALESFORCE_GROUP
from campaign_pipeline.salesforce.resource import SalesforceResource
from campaign_pipeline.stores import SyncLedgerResource


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
        return dg.Output(desired, metadata=metadata_per_partition(context, desired, _tasks_metadata))

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
            "The Enhanced Note (ContentNote, linked to the person by a ContentDocumentLink) each matched "
            "Lead/Contact should carry for the campaign: Title names the campaign, Content (HTML, base64) says what "
            "was sent when, opens, clicks with their URLs, bounce and unsubscribe. Keyed by campaign + person, so "
            "new activity updates the note in place."
            if enhanced_notes(profile)
            else "The Note each matched Lead/Contact should carry for the campaign: Title (80 characters) names the "
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
        return dg.Output(desired, metadata=metadata_per_partition(context, desired, _notes_metadata))

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
            "The campaign's sent email (HTML) as a File (ContentVersion, published to each matched Lead/Contact; "
            "a changed email becomes the file's next version) for compliance records. Emails over "
            f"{FILE_MAX_BYTES} bytes are refused with the reason, never truncated. Files use the org's file "
            "storage: metadata shows the bytes this run will write."
            if enhanced_notes(profile)
            else "The campaign's sent email (HTML) attached to each matched Lead/Contact for compliance records "
            f"(text/html). Emails over {ATTACHMENT_MAX_BYTES} bytes (25 MB) are refused with the reason, never "
            "truncated. Attachments use the org's file storage: metadata shows the bytes this run will write."
        ),
    )
    def sf_attachments(
        context: dg.AssetExecutionContext,
        salesforce: SalesforceResource,
        campaign_content: pd.DataFrame,
        member_statuses: pd.DataFrame,
        salesforce_matches: pd.DataFrame,
        mailchimp_campaign_report: pd.DataFrame,
        sync_ledger: SyncLedgerResource,
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
            sync_ledger.open_for_run(context.assets_def.keys, context.partition_keys, salesforce).load(
                attachment_kind(profile).name, campaign_ids
            ),
        )
        writing = to_write[to_write["action"].isin(["create", "update"])]
        for reason in desired["reject_reason"].dropna().unique():
            context.log.warning(reason)

        def describe(own: pd.DataFrame) -> dict[str, Any]:
            own_writing = writing[writing["campaign_id"].isin(own["campaign_id"].unique())]
            return _attachments_metadata(own, own_writing, enhanced_notes(profile))

        # Each campaign's files and bytes to write: a campaign with no rows has none.
        return dg.Output(desired, metadata=metadata_per_partition(context, desired, describe))

    return sf_attachments


def _tasks_metadata(desired: pd.DataFrame) -> dict[str, Any]:
    subjects = desired["Subject"].str.split(" ").str[0].value_counts().to_dict() if len(desired) else {}
    metadata = _common_metadata(desired)
    metadata.update(
        {
            "tasks": len(desired),
            "by_response": counts_table(subjects, "response"),
            "matched_people": int(desired["WhoId"].nunique()),
            "preview": _table(desired, ["sync_key", "WhoId", "Subject", "ActivityDate"]),
        }
    )
    return metadata


def _notes_metadata(desired: pd.DataFrame) -> dict[str, Any]:
    metadata = _common_metadata(desired)
    metadata["notes"] = len(desired)
    if "Body" in desired.columns:
        metadata["body_characters"] = int(desired["Body"].str.len().sum()) if len(desired) else 0
        metadata["preview"] = _table(desired, ["sync_key", "ParentId", "Title"])
    else:
        # Enhanced Notes are files: their content counts against the org's file storage.
        metadata["file_bytes"] = file_bytes(desired)
        metadata["preview"] = _table(desired, ["sync_key", "Title"])
    return metadata


def _attachments_metadata(desired: pd.DataFrame, writing: pd.DataFrame, as_files: bool) -> dict[str, Any]:
    metadata = _common_metadata(desired)
    if as_files:
        metadata.update(
            {
                "files": len(desired),
                "file_bytes": file_bytes(desired),
                "file_bytes_to_write": file_bytes(writing),
                "files_to_write": len(writing),
                "preview": _table(desired, ["sync_key", "FirstPublishLocationId", "PathOnClient", "reject_reason"]),
            }
        )
    else:
        metadata.update(
            {
                "attachments": len(desired),
                "attachment_bytes": attachment_bytes(desired),
                "attachment_bytes_to_write": attachment_bytes(writing),
                "attachments_to_write": len(writing),
                "preview": _table(desired, ["sync_key", "ParentId", "Name", "reject_reason"]),
            }
        )
    return metadata
