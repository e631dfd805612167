"""Files as versions: a File (ContentVersion) is created once; a changed one becomes its document's next version.

Salesforce never updates a file's data in place: VersionData is set on create only, and a new ContentVersion that
names ``ContentDocumentId`` is the document's next version (the older ones lose ``IsLatest``). So for a
``versioned`` kind the ledger holds the ContentDocument's Id, a create is a ContentVersion with the person as
``FirstPublishLocationId`` (which links the new document to the person), and an "update" is a create of the next
version. Neither POST is safe to send twice, so both are recorded ``pending`` before they go; a key left pending
(its answer lost, or the run stopped) is settled by lookups before anything is sent again:

- a pending first version: ``ContentVersion WHERE FirstPublishLocationId IN (...) AND Title IN (...)`` finds the
  document it made (an Id the ledger holds for another key is never taken);
- a pending next version (or an adopted document): the document's latest version (``IsLatest = true``) is
  compared by ``Checksum`` (MD5 of the data) and Title with what we would send; equal means it landed.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pandas as pd
from simple_salesforce.format import format_soql

from campaign_pipeline.core.diff import RESULT_PENDING
from campaign_pipeline.salesforce.engine import sobject_collections
from campaign_pipeline.salesforce.engine.context import SyncContext
from campaign_pipeline.salesforce.engine.encoding import blob_bytes, payloads
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.engine.lookups import lookup_existing, record_identity
from campaign_pipeline.salesforce.engine.report import KindOutcome
from campaign_pipeline.salesforce.engine.sobject_collections import (
    _COLLECTION_RECORD_OVERHEAD,
    _collection_call,
    _single_record_call,
    collection_batches,
)
from campaign_pipeline.salesforce.resource import TRANSIENT_RECORD_ERRORS, SalesforceCallFailed, SalesforceStopped
from campaign_pipeline.salesforce.soql import in_list_chunks

DATA_FIELD = "VersionData"
DOCUMENT_FIELD = "ContentDocumentId"


def sync_file_versions(ctx: SyncContext, kind: RecordKind, todo: pd.DataFrame, outcome: KindOutcome) -> None:
    """Settle keys left pending, then send first versions and next versions (sObject Collections)."""
    todo = _settle_unknown(ctx, kind, todo, outcome)
    outcome.api = "collections"
    for action in ("create", "update"):
        rows = todo[todo["action"] == action]
        if len(rows):
            _send_versions(ctx, kind, rows, action, outcome)


def _checksums(data: pd.Series) -> pd.Series:
    return data.map(lambda encoded: hashlib.md5(base64.b64decode(encoded)).hexdigest(), na_action="ignore")  # noqa: S324


def _settle_unknown(ctx: SyncContext, kind: RecordKind, todo: pd.DataFrame, outcome: KindOutcome) -> pd.DataFrame:
    campaign_ids = sorted(todo["campaign_id"].dropna().unique().tolist())
    known = ctx.ledger.load(kind.name, campaign_ids)
    pending = set(known.loc[known["last_result"] == RESULT_PENDING, "sync_key"])
    unknown = todo["sync_key"].isin(pending)
    if not unknown.any():
        return todo
    todo = todo.copy()
    first = unknown & (todo["action"] == "create")
    if first.any():
        found = lookup_existing(ctx.client, kind, todo[first], [DOCUMENT_FIELD])
        taken = set(known["salesforce_id"].dropna())
        found = found.assign(_identity=record_identity(kind, found)).sort_values("Id")
        by_identity = dict(tuple(found.groupby("_identity", sort=False)))
        for index, identity in record_identity(kind, todo[first]).items():
            options = by_identity.get(identity)
            if options is None:
                continue
            options = options[~options[DOCUMENT_FIELD].isin(taken)]
            if len(options):
                document = options.iloc[0][DOCUMENT_FIELD]
                taken.add(document)
                todo.at[index, "salesforce_id"] = document
                todo.at[index, "action"] = "update"
    check = unknown & (todo["action"] == "update")
    if check.any():
        latest = _latest_versions(ctx, todo.loc[check, "salesforce_id"])
        rows = todo[check]
        landed = (rows["salesforce_id"].map(latest["Checksum"]) == _checksums(rows[DATA_FIELD])) & (
            rows["salesforce_id"].map(latest["Title"]) == rows["Title"]
        )
        done = rows[landed.fillna(False).astype(bool)]
        ctx.book.record(kind, done, done["salesforce_id"], "ok", None, None)
        outcome.add("unchanged", done)
        todo = todo.drop(index=done.index)
    return todo


def _latest_versions(ctx: SyncContext, document_ids: pd.Series) -> pd.DataFrame:
    """The latest version of each document (Checksum, Title), indexed by ContentDocumentId."""
    template = "SELECT Id, ContentDocumentId, Checksum, Title FROM ContentVersion WHERE ContentDocumentId IN {} AND IsLatest = true"
    records: list[dict] = []
    for [ids] in in_list_chunks(document_ids.dropna().astype(str).to_frame("id"), template):
        records += ctx.client.query_all(format_soql(template, ids))
    frame = pd.DataFrame(records, columns=["Id", DOCUMENT_FIELD, "Checksum", "Title"])
    return frame.drop_duplicates(DOCUMENT_FIELD).set_index(DOCUMENT_FIELD)


def _send_versions(ctx: SyncContext, kind: RecordKind, rows: pd.DataFrame, action: str, outcome: KindOutcome) -> None:
    """POST ContentVersions: first versions (``create``) or next versions of the ledger's documents (``update``)."""
    rows = rows.reset_index(drop=True)
    records = payloads(kind, rows, "create", ctx.fields.types_of(kind), set())
    if action == "update":
        for record, document in zip(records, rows["salesforce_id"], strict=True):
            for name in kind.create_only_fields:
                record.pop(name, None)
            record[DOCUMENT_FIELD] = document
    sizes = [len(json.dumps(record)) + _COLLECTION_RECORD_OVERHEAD for record in records]
    positions = list(range(len(rows)))
    # Read at call time: one JSON request carries at most 37.5 MB of base64 (see sobject_collections).
    max_bytes = sobject_collections.COLLECTION_MAX_BODY_BYTES
    # First versions written, whose documents are read once for all of them after the last call.
    unsettled: list[tuple[pd.DataFrame, pd.Series]] = []
    try:
        _send_chunks(ctx, kind, rows, records, sizes, positions, max_bytes, action, outcome, unsettled)
    finally:
        # Also after a stop: what was written is settled if Salesforce still answers, else it stays pending.
        _settle_first_versions(ctx, kind, unsettled, outcome)


def _send_chunks(
    ctx: SyncContext,
    kind: RecordKind,
    rows: pd.DataFrame,
    records: list[dict],
    sizes: list[int],
    positions: list[int],
    max_bytes: int,
    action: str,
    outcome: KindOutcome,
    unsettled: list[tuple[pd.DataFrame, pd.Series]],
) -> None:
    client = ctx.client
    for attempt in range(client.max_retries + 1):
        retry: list[int] = []
        for chunk in collection_batches(positions, sizes, max_bytes):
            chunk_rows = rows.iloc[chunk]
            # Both kinds of POST make a version: never repeat one blindly; a lookup settles an unanswered one.
            ctx.ledger.record_pending(kind.name, chunk_rows)
            if len(chunk) == 1 and sizes[chunk[0]] > max_bytes:
                answer = _single_record_call(ctx, kind, "create", records[chunk[0]])
            else:
                answer = _collection_call(ctx, kind, "create", [records[i] for i in chunk])
            if isinstance(answer, SalesforceCallFailed):
                ctx.record_call_failure(kind, chunk_rows, outcome, "create", answer)
                continue
            retry += _apply(
                ctx, kind, chunk_rows, chunk, answer, action, outcome, unsettled, final=attempt == client.max_retries
            )
        if not retry:
            return
        positions = retry
        client.stats.retries += 1
        client.sleep(client.backoff_seconds * (2**attempt))


def _apply(
    ctx: SyncContext,
    kind: RecordKind,
    rows: pd.DataFrame,
    positions: list[int],
    results: list[dict],
    action: str,
    outcome: KindOutcome,
    unsettled: list[tuple[pd.DataFrame, pd.Series]],
    *,
    final: bool,
) -> list[int]:
    ok = pd.Series([bool(result.get("success")) for result in results], index=rows.index)
    codes = pd.Series([(r.get("errors") or [{}])[0].get("statusCode", "") for r in results], index=rows.index)
    messages = pd.Series([(r.get("errors") or [{}])[0].get("message", "") for r in results], index=rows.index)
    transient = ~ok & codes.isin(list(TRANSIENT_RECORD_ERRORS)) & (not final)
    failed = ~ok & ~transient
    ctx.book.record(kind, rows[failed], rows.loc[failed, "salesforce_id"], "error", codes[failed], messages[failed])
    outcome.add("failed", rows[failed])
    written = rows[ok]
    if action == "create" and len(written):
        # Pending until their documents are read (``_settle_first_versions``), in as few queries as the URI allows.
        unsettled.append((written, pd.Series([r.get("id") for r in results], index=rows.index)[ok]))
    elif len(written):
        ctx.book.record(kind, written, written["salesforce_id"], "ok", None, None)
        outcome.add("updated", written)
        outcome.add("file_bytes", written, blob_bytes(written, ctx.fields.types_of(kind)))
    return [p for p, retry in zip(positions, transient, strict=True) if retry]


def _settle_first_versions(
    ctx: SyncContext, kind: RecordKind, unsettled: list[tuple[pd.DataFrame, pd.Series]], outcome: KindOutcome
) -> None:
    """Record the first versions written as ``ok`` with their ContentDocumentId, read for all of them at once."""
    if not unsettled:
        return
    written = pd.concat([rows for rows, _ in unsettled])
    version_ids = pd.concat([ids for _, ids in unsettled])
    unsettled.clear()
    try:
        documents = _documents_of(ctx, version_ids)
    except SalesforceStopped:
        documents = None
    if documents is None:
        # The versions exist but their documents are unknown: they stay pending for the next run's lookup.
        return
    document_ids = version_ids.map(documents)
    # A version whose document the read did not return stays pending too, never "ok" without an Id.
    written = written[document_ids.notna()]
    ctx.book.record(kind, written, document_ids[document_ids.notna()], "ok", None, None)
    outcome.add("created", written)
    outcome.add("file_bytes", written, blob_bytes(written, ctx.fields.types_of(kind)))


def _documents_of(ctx: SyncContext, version_ids: pd.Series) -> dict[str, str] | None:
    """ContentDocumentId by ContentVersion Id (one query per URI-sized chunk), or None when the read failed."""
    template = "SELECT Id, ContentDocumentId FROM ContentVersion WHERE Id IN {}"
    documents: dict[str, str] = {}
    try:
        for [ids] in in_list_chunks(version_ids.astype(str).to_frame("id"), template):
            documents.update({r["Id"]: r[DOCUMENT_FIELD] for r in ctx.client.query_all(format_soql(template, ids))})
    except SalesforceCallFailed:
        return None
    return documents
