"""One sync run: check fields, then per kind (parents first) diff against the ledger, look up, and send."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from campaign_pipeline.core import diff as diffing
from campaign_pipeline.core.salesforce_records import enforce_field_limits
from campaign_pipeline.salesforce.engine.bulk import send_bulk
from campaign_pipeline.salesforce.engine.context import BULK_MAX_UPLOAD_BYTES, OrgFields, SyncContext, logger
from campaign_pipeline.salesforce.engine.file_versions import sync_file_versions
from campaign_pipeline.salesforce.engine.kinds import DesiredRecords, RecordKind
from campaign_pipeline.salesforce.engine.lookups import adopt_existing, number_new_records
from campaign_pipeline.salesforce.engine.preview import missing_parent, preview_kind
from campaign_pipeline.salesforce.engine.report import Bookkeeping, KindOutcome, SyncReport
from campaign_pipeline.salesforce.engine.sobject_collections import send_collections
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.resource import SalesforceCallFailed, SalesforceClient, SalesforceStopped

if TYPE_CHECKING:  # the profile imports the mode table, which imports record kinds from here
    from campaign_pipeline.profile import SyncSettings


def sync_desired_records(
    client: SalesforceClient,
    ledger: SyncLedger,
    desired: Sequence[DesiredRecords],
    settings: SyncSettings,
    *,
    max_upload_bytes: int = BULK_MAX_UPLOAD_BYTES,
) -> SyncReport:
    """Write the desired records (parents first) and return what happened; see the package docstring.

    ``max_upload_bytes`` caps one Bulk API 2.0 upload (bigger data goes as several jobs).
    """
    book = Bookkeeping(ledger, dry_run=settings.preview_only)
    ctx = SyncContext(client, ledger, settings, OrgFields(client), book, max_upload_bytes)
    report = SyncReport(target=client.target, preview_only=settings.preview_only)
    try:
        for batch in desired:
            ctx.fields.check(batch.kind, batch.frame)
        for batch in desired:
            try:
                _sync_kind(ctx, report, batch.kind, batch.frame)
            except SalesforceCallFailed as failure:
                # A call that failed after retries (a lookup, a bulk job) ends this kind, not the run: what
                # was written is recorded, the rest is sent next run; children wait for a missing parent.
                report.kind_errors[batch.kind.name] = str(failure)
                logger.warning("Salesforce sync of %s failed: %s", batch.kind.name, failure)
    except SalesforceStopped as stop:
        report.stopped = str(stop)
        logger.warning("Salesforce sync stopped: %s", stop)
    finally:
        report.calls = dict(client.stats.calls)
        report.retries = client.stats.retries
        ctx.book.fill(report)
    return report


def _sync_kind(ctx: SyncContext, report: SyncReport, kind: RecordKind, frame: pd.DataFrame) -> None:
    settings = ctx.settings
    outcome = KindOutcome(kind.name, kind.sobject)
    report.outcomes[kind.name] = outcome
    outcome.add("desired", frame)
    if frame.empty:
        return
    frame = enforce_field_limits(
        frame, kind.sobject, policy=settings.field_limit_policy, extra_limits=ctx.fields.text_limits(kind, frame)
    )
    campaign_ids = sorted(frame["campaign_id"].dropna().unique().tolist())
    frame = _fill_parent_ids(ctx.ledger, kind, frame)
    if kind.shared_across_campaigns:
        known = ctx.ledger.load_keys(kind.name, frame["sync_key"].astype(str).tolist())
    else:
        known = ctx.ledger.load(kind.name, campaign_ids)
    diffed = diffing.diff_against_ledger(frame, known)
    if kind.updates_existing:
        # The record exists already (the frame names it): what the ledger lacks is sent as an update.
        diffed["salesforce_id"] = diffed["Id"].astype(object)
        diffed.loc[diffed["action"] == "create", "action"] = "update"
    parentless = diffed["action"].isin(["create", "update"]) & missing_parent(kind, diffed)
    if settings.preview_only:
        preview_kind(ctx, kind, diffed, parentless, outcome)
        return
    outcome.add("unchanged", diffed[diffed["action"] == "unchanged"])
    outcome.add("rejected", diffed[diffed["action"] == "rejected"])
    ctx.book.note_changes(kind, diffed[diffed["action"] != "unchanged"])

    rejected = diffed[diffed["action"] == "rejected"]
    ctx.book.record(kind, rejected, None, "error", "FIELD_LIMIT", rejected["reject_reason"])
    outcome.add("failed", rejected)
    waiting = diffed[parentless]
    if len(waiting):
        reason = f"parent {kind.parent_kind} has no Salesforce Id yet (its write failed or was not made)"
        ctx.book.record(kind, waiting, None, "error", "PARENT_NOT_SYNCED", reason)
        outcome.add("failed", waiting)
    todo = diffed[diffed["action"].isin(["create", "update"]) & ~parentless].copy()
    if todo.empty:
        return

    if kind.versioned:
        sync_file_versions(ctx, kind, todo, outcome)
        return
    # Records whose earlier create has an unknown outcome, or that the org may have made itself.
    lookup = (todo["action"] == "create") & (todo["needs_lookup"] | kind.lookup_before_create)
    if kind.external_id_field:
        # An upsert by external ID is safe to repeat as is: there is nothing to look up first.
        lookup = pd.Series(False, index=todo.index)
    if lookup.any():
        todo = adopt_existing(ctx, kind, todo, lookup, outcome)

    creates = todo[todo["action"] == "create"]
    if kind.sequence_field and len(creates):
        creates = number_new_records(ctx, kind, creates)
    updates = todo[todo["action"] == "update"]
    use_bulk = kind.bulk_allowed and len(creates) + len(updates) >= settings.bulk_threshold
    outcome.api = "bulk" if use_bulk else "collections"
    send = send_bulk if use_bulk else send_collections
    if len(creates):
        send(ctx, kind, creates, "create", outcome)
    if len(updates):
        send(ctx, kind, updates, "update", outcome)


def _fill_parent_ids(ledger: SyncLedger, kind: RecordKind, frame: pd.DataFrame) -> pd.DataFrame:
    if not kind.parent_field or not kind.parent_kind:
        return frame
    # By the parents' keys: a parent may be shared by campaigns of other partitions (a parent Campaign).
    parents = ledger.load_keys(kind.parent_kind, sorted(frame["parent_key"].dropna().astype(str).unique()))
    parent_ids = parents.dropna(subset=["salesforce_id"]).set_index("sync_key")["salesforce_id"]
    frame = frame.copy()
    frame[kind.parent_field] = frame["parent_key"].map(parent_ids).astype(object)
    return frame
