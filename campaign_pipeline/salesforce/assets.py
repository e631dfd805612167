"""Per-campaign Salesforce assets: matches, unmatched members, Campaign desired records and the push (salesforce_sync).

Which desired-record assets a mode has, and what the push writes from them in which order, is the mode table's
(``campaign_pipeline.modes``); the assets here build their frames through it.
"""

from typing import Any

import dagster as dg
import pandas as pd

from campaign_pipeline.asset_metadata import (
    RUN_WIDE_CALLS,
    counts_table,
    escaped_markdown_table,
    metadata_per_campaign,
    metadata_per_partition,
    partition_check_results,
    preview_table,
)
from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.core.salesforce_records import APPROXIMATE_SEND_NOTE
from campaign_pipeline.mailchimp.partitions import (
    CAMPAIGN_BACKFILL_POLICY,
    CAMPAIGN_PARTITION_METADATA,
    campaign_asset,
    mailchimp_campaigns,
)
from campaign_pipeline.modes import build_desired_frame, desired_asset_names, push_records
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import SyncReport, sync_desired_records
from campaign_pipeline.salesforce.leads import create_leads_for_unmatched, lead_inputs, with_new_leads
from campaign_pipeline.salesforce.matching import MEMBER_KEY_COLUMNS, match_campaign_members
from campaign_pipeline.salesforce.resource import SalesforceResource, SalesforceStopped
from campaign_pipeline.salesforce.sync_metadata import (
    PREVIEW_TAG,
    campaign_metadata,
    preview_requested,
    run_metadata,
)
from campaign_pipeline.stores import PeopleMirrorResource, SyncLedgerResource

SALESFORCE_GROUP = "salesforce"
SALESFORCE_POOL = "salesforce"


def build_salesforce_matches(profile: SyncProfile) -> dg.AssetsDefinition:
    @dg.multi_asset(
        outs={
            "salesforce_matches": dg.AssetOut(
                group_name=SALESFORCE_GROUP,
                metadata=CAMPAIGN_PARTITION_METADATA,
                kinds={"salesforce"},
                description=(
                    "Campaign members matched to a Salesforce Contact or Lead by email (case-insensitive): a "
                    "Contact wins over a Lead, converted Leads are skipped, and several candidates pick the oldest "
                    "(CreatedDate, then Id) with the pick noted in match_note."
                ),
            ),
            "unmatched_members": dg.AssetOut(
                group_name=SALESFORCE_GROUP,
                metadata=CAMPAIGN_PARTITION_METADATA,
                kinds={"salesforce"},
                description=(
                    "Campaign members no Contact or unconverted Lead matches, with the reason. With "
                    "matching.create_leads_for_unmatched, salesforce_sync creates them as Leads and writes their "
                    "records; the next run matches them as ordinary Leads."
                ),
            ),
        },
        # Matching needs who the members are, not their metrics: a million-member campaign loads three columns.
        ins={"member_statuses": dg.AssetIn(metadata={"columns": list(MEMBER_KEY_COLUMNS)})},
        partitions_def=mailchimp_campaigns,
        pool=SALESFORCE_POOL,
        backfill_policy=CAMPAIGN_BACKFILL_POLICY,
        can_subset=False,
    )
    def salesforce_matches(
        context: dg.AssetExecutionContext,
        salesforce: SalesforceResource,
        people_mirror: PeopleMirrorResource,
        member_statuses: pd.DataFrame,
    ):
        with salesforce.open_client(
            api_call_budget=profile.sync.api_call_budget,
            limit_usage_stop_fraction=profile.sync.limit_usage_stop_fraction,
            log=context.log,
        ) as client:
            mirror = people_mirror.open()
            try:
                matches, unmatched = match_campaign_members(client, member_statuses, mirror)
            except SalesforceStopped as stop:
                # Nothing is written by matching; fail the step plainly so the sync does not run on a partial match.
                raise dg.Failure(
                    description=f"matching stopped before it finished: {stop}", allow_retries=False
                ) from stop
            calls = dict(client.stats.calls)
        common: dict[str, Any] = {"salesforce_target": client.target, "salesforce_api_calls": sum(calls.values())}
        if len(context.partition_keys) > 1:
            common["salesforce_api_calls_are"] = RUN_WIDE_CALLS
        person_accounts = mirror.last_refresh is not None and mirror.last_refresh.person_accounts
        if mirror.last_refresh is not None:
            # How fresh the people matched against are, and what keeping them fresh cost this run.
            common.update(mirror.last_refresh.metadata())

        def describe_matches(campaign_ids: list[str]) -> dict[str, Any]:
            own = matches[matches["campaign_id"].isin(campaign_ids)].reset_index(drop=True)
            people: dict[str, Any] = {}
            if person_accounts:
                # Matched person contacts, counted among "contacts": their members and Tasks go on the person.
                people["person_accounts"] = mirror.person_accounts_among(client.org_id, own["salesforce_id"])
            # Matching only reads: the push creates these Leads (salesforce.leads).
            would_become_leads = (
                int(unmatched["campaign_id"].isin(campaign_ids).sum())
                if profile.matching.create_leads_for_unmatched
                else 0
            )
            return {
                "matched": len(own),
                "contacts": int((own["salesforce_object"] == "Contact").sum()),
                "leads": int((own["salesforce_object"] == "Lead").sum()),
                **people,
                "several_candidates": int((own["candidate_count"] > 1).sum()),
                "would_become_leads": would_become_leads,
                "preview": preview_table(own),
            }

        def describe_unmatched(campaign_ids: list[str]) -> dict[str, Any]:
            own = unmatched[unmatched["campaign_id"].isin(campaign_ids)].reset_index(drop=True)
            return {"unmatched": len(own), "preview": preview_table(own)}

        for output, describe in (("salesforce_matches", describe_matches), ("unmatched_members", describe_unmatched)):
            metadata = metadata_per_campaign(
                context, describe, run_wide=common, asset_key=context.asset_key_for_output(output)
            )
            yield dg.Output(
                matches if output == "salesforce_matches" else unmatched, output_name=output, metadata=metadata
            )

    return salesforce_matches


def build_sf_campaign(profile: SyncProfile) -> dg.AssetsDefinition:
    @campaign_asset(
        name="sf_campaign",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "pandas"},
        ins={"campaign_totals": dg.AssetIn(), "mailchimp_campaign_report": dg.AssetIn()},
        description=(
            "The Campaign each Mailchimp campaign should be in Salesforce: name, type Email, start date, a "
            "description (saying when the send time is approximate, for automation emails) and the campaign "
            "totals mapped in field_mapping.campaign. One row per campaign, keyed by the Mailchimp campaign id."
        ),
    )
    def sf_campaign(
        context: dg.AssetExecutionContext, campaign_totals: pd.DataFrame, mailchimp_campaign_report: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile,
            "sf_campaign",
            {"campaign_totals": campaign_totals, "mailchimp_campaign_report": mailchimp_campaign_report},
        )
        return dg.Output(desired, metadata=metadata_per_partition(context, desired, _campaign_metadata))

    return sf_campaign


def build_sf_campaign_members(profile: SyncProfile) -> dg.AssetsDefinition:
    @campaign_asset(
        name="sf_campaign_members",
        group_name=SALESFORCE_GROUP,
        kinds={"salesforce", "pandas"},
        ins={"member_statuses": dg.AssetIn(), "salesforce_matches": dg.AssetIn()},
        description=(
            "The CampaignMember each matched member should be: its Contact or Lead, the latest status (Sent, "
            "Opened, Clicked, Bounced, Unsubscribed) and the member metrics mapped in "
            "field_mapping.campaign_member. Keyed by campaign + Salesforce person."
        ),
    )
    def sf_campaign_members(
        context: dg.AssetExecutionContext, member_statuses: pd.DataFrame, salesforce_matches: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        desired = build_desired_frame(
            profile,
            "sf_campaign_members",
            {"member_statuses": member_statuses, "salesforce_matches": salesforce_matches},
        )
        return dg.Output(desired, metadata=metadata_per_partition(context, desired, _members_metadata))

    return sf_campaign_members


def _campaign_metadata(desired: pd.DataFrame) -> dict[str, Any]:
    approximate = int((~desired["sent_at_is_exact"]).sum())
    metadata: dict[str, Any] = {
        "campaigns": len(desired),
        "approximate_send_times": approximate,
        "truncated": int((desired["truncated_fields"] != "").sum()),
        "rejected": int(desired["reject_reason"].notna().sum()),
        "preview": preview_table(desired),
    }
    if approximate:
        metadata["note"] = APPROXIMATE_SEND_NOTE
    return metadata


def _members_metadata(desired: pd.DataFrame) -> dict[str, Any]:
    approximate = int((~desired["sent_at_is_exact"]).sum())
    metadata: dict[str, Any] = {
        "members": len(desired),
        "approximate_send_times": approximate,
        "preview": preview_table(desired),
    }
    if len(desired):
        metadata["status_breakdown"] = counts_table(desired["Status"].value_counts().to_dict(), "Status")
    if approximate:
        metadata["note"] = APPROXIMATE_SEND_NOTE
    return metadata


def build_salesforce_sync(profile: SyncProfile) -> dg.AssetsDefinition:
    """The push: the mode's desired-record assets, written in the mode table's order (parents first).

    With matching.create_leads_for_unmatched it also reads ``lead_inputs``: it creates the Leads first, then
    writes their members' records with the rest (``salesforce.leads``). Every Salesforce write is made here.
    """
    names = list(desired_asset_names(profile))
    extra_inputs = lead_inputs(profile)

    @campaign_asset(
        name="salesforce_sync",
        group_name=SALESFORCE_GROUP,
        pool=SALESFORCE_POOL,
        kinds={"salesforce"},
        ins={name: dg.AssetIn() for name in [*names, *extra_inputs]},
        check_specs=[
            dg.AssetCheckSpec(
                "no_failed_records",
                asset="salesforce_sync",
                description="Every desired record was written; failures are listed with Salesforce's code and message.",
                partitions_def=mailchimp_campaigns,
            )
        ],
        description=(
            f"Writes {', '.join(names)} to Salesforce (mode {profile.mode}): only new records, changed records "
            "and records whose last write failed, through sObject Collections or, from "
            f"{profile.sync.bulk_threshold} records, Bulk API 2.0. Metadata: created / updated / unchanged / "
            "failed per campaign partition, API calls, the target org (sandbox or live), failures and changes. "
            f"A dry run (run tag {PREVIEW_TAG} = true, or sync.preview_only) writes nothing and shows would_create / "
            "would_update / would_skip / would_fail. Output: the ledger rows of these campaigns."
        ),
    )
    def salesforce_sync(
        context: dg.AssetExecutionContext,
        salesforce: SalesforceResource,
        sync_ledger: SyncLedgerResource,
        **frames: pd.DataFrame,
    ):
        preview = profile.sync.preview_only or preview_requested(context.run.tags)
        settings = profile.sync.model_copy(update={"preview_only": preview})
        ledger = sync_ledger.open_for_run(context.assets_def.keys, context.partition_keys, salesforce)
        desired_frames = {name: frames[name] for name in names}
        with salesforce.open_client(
            api_call_budget=settings.api_call_budget,
            limit_usage_stop_fraction=settings.limit_usage_stop_fraction,
            log=context.log,
        ) as client:
            lead_report = None
            if extra_inputs:
                lead_report, new_matches = create_leads_for_unmatched(
                    client, ledger, profile, frames["unmatched_members"], settings
                )
                desired_frames = with_new_leads(profile, desired_frames, frames, new_matches)
            desired = push_records(profile, desired_frames)
            report = sync_desired_records(client, ledger, desired, settings)
            if lead_report is not None:
                report = lead_report.followed_by(report)
        if report.stopped:
            context.log.warning(f"Salesforce sync stopped cleanly: {report.stopped}")
        campaign_of = {key: campaign_id_from_key(key) for key in context.partition_keys}
        metadata = run_metadata(report, len(campaign_of))
        # Whose state this is: the ledger rows above belong to this Mailchimp account and this Salesforce org only.
        metadata["source"] = ledger.source or "unknown (no preflight recorded the campaigns' account)"
        metadata["target"] = ledger.target
        if client.session_lost:
            # Not a clean stop: nothing more can be written until someone renews the login, so the run fails
            # with the reason (what was written before is in the ledger) instead of reporting success.
            raise dg.Failure(
                description=client.session_lost, metadata={**metadata, **campaign_metadata(report)}, allow_retries=False
            )
        approximate = sum(int((~item.frame["sent_at_is_exact"].astype(bool)).sum()) for item in desired)
        if approximate:
            metadata["note"] = APPROXIMATE_SEND_NOTE
        # Each campaign partition's materialization carries its own counts and changes, also in a batched run.
        own_reports = {key: report.for_campaign(campaign_id) for key, campaign_id in campaign_of.items()}
        for key, own in own_reports.items():
            context.add_asset_metadata(campaign_metadata(own), partition_key=key)
        kinds = [item.kind.name for item in desired]
        per_kind_rows = [ledger.load(kind, list(campaign_of.values())).assign(object_kind=kind) for kind in kinds]
        # Kinds with no rows yet (a preview, a mode's first run) are left out: pandas would otherwise guess the
        # columns' types from all-empty frames, which it warns is going away.
        ledger_rows = pd.concat([rows for rows in per_kind_rows if len(rows)] or per_kind_rows[:1], ignore_index=True)
        # Text columns as read (nulls are None): handed on without another copy of a campaign's every row.
        ledger_rows = ledger_rows[
            ["campaign_id", "object_kind", "sync_key", "salesforce_id", "last_result", "error_code", "error_message"]
        ]
        del per_kind_rows, desired, desired_frames, frames
        yield dg.Output(ledger_rows, metadata=metadata)
        yield from partition_check_results(
            context,
            "no_failed_records",
            {key: _no_failed_records(own) for key, own in own_reports.items()},
        )

    return salesforce_sync


def _no_failed_records(report: SyncReport) -> dg.AssetCheckResult:
    """One campaign's check: every desired record written (or, in preview, nothing would fail)."""
    failed = report.total("to_fail" if report.preview_only else "failed")
    metadata: dict[str, Any] = {"failed": failed}
    if report.stopped:
        metadata["stopped"] = report.stopped
    if len(report.failures):
        metadata["failures"] = escaped_markdown_table(report.failures.drop(columns=["campaign_id"]), 20)
    return dg.AssetCheckResult(
        passed=failed == 0 and not report.stopped and not report.kind_errors,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )
