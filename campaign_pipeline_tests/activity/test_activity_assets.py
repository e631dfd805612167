"""The activity-mode assets: which exist per mode, their wiring, and what they show in the UI (metadata)."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from campaign_pipeline import modes
from campaign_pipeline.asset_metadata import table_rows
from campaign_pipeline.core.content_records import file_bytes
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce import activity_assets
from campaign_pipeline.salesforce.defs import salesforce_assets
from campaign_pipeline.sandbox.resources import SandboxSalesforceResource
from campaign_pipeline.stores import store_resources

from .frames import content, events, matches, recipients, report, statuses

CLASSIC_NOTES = SyncProfile.model_validate({"mode": "notes", "activity": {"notes_format": "classic"}})
PEOPLE = {"ann@x.com": ("0035g0000000001AAA", "Contact"), "bob@x.com": ("00Q5g0000000002AAA", "Lead")}


def _keys(mode: str, **profile) -> dict[str, dg.AssetsDefinition]:
    built = salesforce_assets(SyncProfile.model_validate({"mode": mode, **profile}))
    return {key.to_user_string(): asset for asset in built for key in asset.keys}


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("activity", {"sf_tasks"}, {"sf_notes", "sf_attachments", "sf_campaign"}),
        ("campaign_and_activity", {"sf_tasks", "sf_campaign", "sf_campaign_members"}, {"sf_notes"}),
        ("notes", {"sf_notes", "sf_attachments"}, {"sf_tasks", "sf_campaign"}),
        ("campaign", set(), {"sf_tasks", "sf_notes", "sf_attachments"}),
    ],
)
def test_graph_shows_only_the_assets_the_mode_uses(mode, present, absent) -> None:
    keys = _keys(mode)
    assert present <= set(keys) and not absent & set(keys)
    push = keys["salesforce_sync"]
    upstream = {key.to_user_string() for key in push.dependency_keys}
    assert present <= upstream


def test_activity_asset_specs() -> None:
    specs = {
        key: (
            sorted(dep.to_user_string() for dep in asset.dependency_keys),
            asset.group_names_by_key[asset.key],
            asset.partitions_def.name,
            bool(asset.descriptions_by_key[asset.key]),
        )
        for mode in ("activity", "notes")
        for key, asset in _keys(mode).items()
        if key.startswith("sf_") and key not in ("sf_campaign", "sf_campaign_members")
    }
    assert specs == {
        "sf_tasks": (
            ["mailchimp_campaign_report", "member_statuses", "raw_email_events", "salesforce_matches"],
            "salesforce",
            "mailchimp_campaigns",
            True,
        ),
        "sf_notes": (
            ["mailchimp_campaign_report", "member_statuses", "raw_email_events", "salesforce_matches"],
            "salesforce",
            "mailchimp_campaigns",
            True,
        ),
        "sf_attachments": (
            ["campaign_content", "mailchimp_campaign_report", "member_statuses", "salesforce_matches"],
            "salesforce",
            "mailchimp_campaigns",
            True,
        ),
    }


def test_campaign_and_activity_tasks_take_whatid_from_the_campaign_ledger() -> None:
    both = modes.task_kind(SyncProfile(mode="campaign_and_activity"))
    alone = modes.task_kind(SyncProfile(mode="activity"))
    assert (both.parent_field, both.parent_kind) == ("WhatId", "campaign")
    assert alone.parent_field is None
    keyed = modes.task_kind(
        SyncProfile.model_validate({"mode": "activity", "field_mapping": {"task_key_field": "Mailchimp_Event_Id__c"}})
    )
    assert keyed.external_id_field == "Mailchimp_Event_Id__c"


def _inputs() -> dict[str, pd.DataFrame]:
    raw = events(("ann@x.com", "open", "2026-03-02 15:05"), ("bob@x.com", "click", "2026-03-02 15:06", "https://e.x/a"))
    return {
        "raw_email_events": raw,
        "member_statuses": statuses(recipients("ann@x.com", "bob@x.com"), raw),
        "salesforce_matches": matches(PEOPLE),
        "mailchimp_campaign_report": report(),
    }


def _run(asset: dg.AssetsDefinition, dagster_instance, **inputs) -> dg.MaterializeResult:
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", ["c1"])
    context = dg.build_asset_context(
        partition_key="c1",
        instance=dagster_instance,
        resources={"salesforce": SandboxSalesforceResource(), **store_resources()},
    )
    return asset(context, **inputs)


def test_sf_tasks_output_and_metadata(dagster_instance, pg_url) -> None:
    output = _run(activity_assets.build_sf_tasks(SyncProfile(mode="activity")), dagster_instance, **_inputs())
    assert len(output.value) == 2
    assert output.metadata["tasks"].value == 2
    assert {row["response"]: row["count"] for row in table_rows(output.metadata["by_response"])} == {
        "Opened": 1,
        "Clicked": 1,
    }


def test_sf_attachments_metadata_reports_bytes_and_refusals(dagster_instance, pg_url) -> None:
    inputs = _inputs()
    inputs.pop("raw_email_events")
    html = "<p>hello</p>"
    built = activity_assets.build_sf_attachments(CLASSIC_NOTES)
    output = _run(built, dagster_instance, campaign_content=content(html), **inputs)
    assert output.metadata["attachment_bytes"].value == 2 * len(html)
    assert output.metadata["attachment_bytes_to_write"].value == 2 * len(html)
    assert output.metadata["rejected"].value == 0
    refused = _run(built, dagster_instance, campaign_content=content(None), **inputs)
    assert refused.metadata["rejected"].value == 2
    assert "no sent HTML" in refused.metadata["reject_reasons"].value


def test_sf_notes_metadata(dagster_instance, pg_url) -> None:
    output = _run(activity_assets.build_sf_notes(CLASSIC_NOTES), dagster_instance, **_inputs())
    assert output.metadata["notes"].value == 2
    assert output.metadata["body_characters"].value == int(output.value["Body"].str.len().sum())


def test_enhanced_notes_and_files_metadata_report_file_bytes(dagster_instance, pg_url) -> None:
    profile = SyncProfile(mode="notes")
    notes = _run(activity_assets.build_sf_notes(profile), dagster_instance, **_inputs())
    assert notes.metadata["notes"].value == 2
    assert notes.metadata["file_bytes"].value == file_bytes(notes.value) > 0
    inputs = _inputs()
    inputs.pop("raw_email_events")
    html = "<p>hello</p>"
    files = _run(
        activity_assets.build_sf_attachments(profile), dagster_instance, campaign_content=content(html), **inputs
    )
    assert files.metadata["files"].value == 2
    assert files.metadata["file_bytes"].value == files.metadata["file_bytes_to_write"].value == 2 * len(html)


def test_profile_activity_settings_reach_the_records() -> None:
    default = SyncProfile(mode="notes")
    assert modes.attachments_enabled(default) and not default.activity.one_task_per_url
    assert modes.task_subtype(default) == "Email"
    no_subtype = SyncProfile.model_validate({"mode": "activity", "activity": {"task_subtype": ""}})
    assert modes.task_subtype(no_subtype) is None
    profile = SyncProfile.model_validate(
        {"mode": "notes", "activity": {"attach_sent_email": False, "one_task_per_url": True}}
    )
    assert not modes.attachments_enabled(profile) and profile.activity.one_task_per_url
    inputs = {**_inputs(), "campaign_content": content("<p>x</p>")}
    kinds = modes.desired_records(profile, inputs)
    # The push still names the Attachment kind; with attachments off its frame has no rows.
    assert [(item.kind.name, len(item.frame)) for item in kinds] == [
        ("content_note", 2),
        ("content_note_link", 2),
        ("email_file", 0),
    ]
    classic = profile.model_copy(update={"activity": profile.activity.model_copy(update={"notes_format": "classic"})})
    kinds = modes.desired_records(classic, inputs)
    assert [(item.kind.name, len(item.frame)) for item in kinds] == [("note", 2), ("attachment", 0)]
    off = modes.build_desired_frame(profile, "sf_attachments", inputs)
    assert off.empty and "VersionData" in off.columns
    assert "Body" in modes.build_desired_frame(classic, "sf_attachments", inputs).columns
