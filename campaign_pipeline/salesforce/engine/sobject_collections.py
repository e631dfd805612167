"""sObject Collections (200 records a call) and single-record sObject calls, with per-record results and retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from simple_salesforce.exceptions import SalesforceResourceNotFound

from campaign_pipeline.salesforce.engine.context import SyncContext, logger
from campaign_pipeline.salesforce.engine.encoding import blob_bytes, payloads
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.engine.lookups import adopt_existing
from campaign_pipeline.salesforce.engine.report import KindOutcome
from campaign_pipeline.salesforce.resource import TRANSIENT_RECORD_ERRORS, SalesforceCallFailed

COLLECTION_SIZE = 200
# A JSON (non-multipart) request carrying blob data is limited to 50 MB of text or 37.5 MB of base64 data (REST API
# guide, "Insert or Update Blob Data"). sObject Collections calls are cut to stay a third below that; a record
# bigger than this on its own (an Attachment near its 25 MB cap is ~35 MB in base64) goes alone, in a single-record
# call (POST /sobjects/<object>, PATCH /sobjects/<object>/<Id>).
COLLECTION_MAX_BODY_BYTES = 25_000_000
# The JSON a Collections call adds around each record ({"attributes": {"type": ...}}, separators).
_COLLECTION_RECORD_OVERHEAD = 64

# What one call answered: per-record results, or the failure of the whole call.
CallAnswer = list[dict] | SalesforceCallFailed


def send_collections(ctx: SyncContext, kind: RecordKind, rows: pd.DataFrame, action: str, outcome: KindOutcome) -> None:
    """Send ``rows`` (one action) in Collections calls; record intent before and outcomes after each call."""
    client = ctx.client
    rows = rows.reset_index(drop=True)
    records = payloads(kind, rows, action, ctx.fields.types_of(kind), ctx.fields.create_only_of(kind))
    sizes = [len(json.dumps(record)) + _COLLECTION_RECORD_OVERHEAD for record in records]
    pending_positions = list(range(len(rows)))
    max_bytes = min(COLLECTION_MAX_BODY_BYTES, ctx.settings.collections_max_request_bytes)
    for attempt in range(client.max_retries + 1):
        transient: list[int] = []
        for chunk in collection_batches(pending_positions, sizes, max_bytes):
            chunk_rows = rows.iloc[chunk]
            if action == "create":
                ctx.ledger.record_pending(kind.name, chunk_rows)
            # An upsert stays a (one-record) Collections call: the sObject upsert answers an update without the Id.
            alone = len(chunk) == 1 and sizes[chunk[0]] > max_bytes
            if alone and not (action == "create" and kind.external_id_field):
                answer = _single_record_call(ctx, kind, action, records[chunk[0]])
            else:
                answer = _collection_call(ctx, kind, action, [records[i] for i in chunk])
            if isinstance(answer, SalesforceCallFailed):
                ctx.record_call_failure(kind, chunk_rows, outcome, action, answer)
                continue
            transient += _apply_results(
                ctx, kind, chunk_rows, chunk, answer, action, outcome, final=attempt == client.max_retries
            )
        if not transient:
            return
        pending_positions = transient
        client.stats.retries += 1
        client.sleep(client.backoff_seconds * (2**attempt))


def collection_batches(positions: list[int], sizes: list[int], max_bytes: int) -> Iterator[list[int]]:
    """Positions in order, cut into Collections calls of at most COLLECTION_SIZE records and ``max_bytes`` of JSON.

    A record bigger than ``max_bytes`` on its own is a batch of one (the caller sends it alone).
    """
    batch: list[int] = []
    total = 0
    for position in positions:
        size = sizes[position]
        if batch and (len(batch) == COLLECTION_SIZE or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(position)
        total += size
    if batch:
        yield batch


def _collection_call(ctx: SyncContext, kind: RecordKind, action: str, records: list[dict]) -> CallAnswer:
    body_records = [{"attributes": {"type": kind.sobject}, **record} for record in records]
    body = json.dumps({"allOrNone": False, "records": body_records})
    what = f"{action} {len(records)} {kind.sobject} record(s) via sObject Collections"
    try:
        if action == "create" and kind.external_id_field:
            return ctx.client.rest(
                "write", what, "PATCH", f"composite/sobjects/{kind.sobject}/{kind.external_id_field}", data=body
            )
        if action == "create":
            return ctx.client.rest("write", what, "POST", "composite/sobjects", data=body, idempotent=False)
        return ctx.client.rest("write", what, "PATCH", "composite/sobjects", data=body)
    except SalesforceCallFailed as failure:
        logger.warning("%s", failure)
        return failure


def _single_record_call(ctx: SyncContext, kind: RecordKind, action: str, record: dict) -> CallAnswer:
    """One record too big to share a Collections call, through the sObject resource; answered like Collections.

    A refusal of the record itself (4xx with an error code: validation, DUPLICATE_VALUE...) becomes its
    per-record failure; a call that failed otherwise (timeouts, 5xx after retries) is the call's failure, as a
    failed Collections call is.
    """
    what = f"{action} 1 {kind.sobject} record via the sObject resource (too large for sObject Collections)"
    body = {name: value for name, value in record.items() if name != "Id"}
    try:
        if action == "create":
            answer = ctx.client.rest(
                "write", what, "POST", f"sobjects/{kind.sobject}", data=json.dumps(body), idempotent=False
            )
            return [answer]
        ctx.client.rest("write", what, "PATCH", f"sobjects/{kind.sobject}/{record['Id']}", data=json.dumps(body))
        return [{"id": record["Id"], "success": True, "errors": []}]
    except SalesforceResourceNotFound as missing:
        # The record is gone (deleted in Salesforce since our last write): its failure, not the call's.
        error: dict[str, Any] = (missing.content or [{}])[0] if isinstance(missing.content, list) else {}
        code = error.get("errorCode") or "NOT_FOUND"
        message = f"{what}: Salesforce answered 404 {code} {error.get('message', '')}".strip()
        return [{"success": False, "errors": [{"statusCode": code, "message": message}]}]
    except SalesforceCallFailed as failure:
        if failure.status is not None and 400 <= failure.status < 500 and failure.error_code:
            return [{"success": False, "errors": [{"statusCode": failure.error_code, "message": str(failure)}]}]
        logger.warning("%s", failure)
        return failure


def _apply_results(
    ctx: SyncContext,
    kind: RecordKind,
    rows: pd.DataFrame,
    positions: list[int],
    results: list[dict],
    action: str,
    outcome: KindOutcome,
    *,
    final: bool,
) -> list[int]:
    """Record one call's per-record results; return positions to retry (lock errors) unless this is final."""
    ok = np.array([bool(result.get("success")) for result in results])
    new_ids = [result.get("id") for result in results]
    codes = [(result.get("errors") or [{}])[0].get("statusCode", "") for result in results]
    messages = [(result.get("errors") or [{}])[0].get("message", "") for result in results]
    retry_mask = np.array(
        [not good and code in TRANSIENT_RECORD_ERRORS and not final for good, code in zip(ok, codes, strict=True)]
    )
    duplicate_mask = np.array(
        [not good and code == "DUPLICATE_VALUE" and action == "create" for good, code in zip(ok, codes, strict=True)]
    )
    ids = pd.Series(new_ids, index=rows.index, dtype=object).where(ok, rows["salesforce_id"])
    ctx.book.record(kind, rows[ok], ids[ok], "ok", None, None)
    outcome.add("file_bytes", rows[ok], blob_bytes(rows[ok], ctx.fields.types_of(kind)))
    if action == "create" or kind.external_id_field:
        created = np.array([bool(result.get("created", action == "create")) for result in results])
        outcome.add("created", rows[ok & created])
        outcome.add("updated", rows[ok & ~created])
    else:
        outcome.add("updated", rows[ok])
    hard_fail = ~ok & ~retry_mask & ~duplicate_mask
    failed_rows = rows[hard_fail]
    ctx.book.record(
        kind,
        failed_rows,
        failed_rows["salesforce_id"],
        "error",
        pd.Series(codes, index=rows.index)[hard_fail],
        pd.Series(messages, index=rows.index)[hard_fail],
    )
    outcome.add("failed", failed_rows)
    if duplicate_mask.any():
        # The record exists (an earlier run, or the org itself made it): adopt it, then bring it up to date.
        _adopt_duplicates(ctx, kind, rows[duplicate_mask], outcome)
    return [position for position, retry in zip(positions, retry_mask, strict=True) if retry]


def _adopt_duplicates(ctx: SyncContext, kind: RecordKind, rows: pd.DataFrame, outcome: KindOutcome) -> None:
    adopted = adopt_existing(ctx, kind, rows.assign(action="create"), pd.Series(True, index=rows.index), outcome)
    updates = adopted[adopted["action"] == "update"]
    missing = adopted[adopted["action"] == "create"]
    if len(missing):
        ctx.book.record(
            kind, missing, None, "error", "DUPLICATE_VALUE", "Salesforce reports a duplicate that a lookup cannot find"
        )
        outcome.add("failed", missing)
    if len(updates):
        send_collections(ctx, kind, updates, "update", outcome)
