"""Bulk API 2.0 ingest jobs: create, upload the CSV, close, poll, read results and pair them back with our rows.

A lost answer never duplicates: a job whose creation went unanswered leaves its creates pending (the next run's
lookup decides); an upload is never sent twice (PUT appends data) — the job is closed and its own results say
what it made; a close whose answer was lost is settled by reading the job's state. Uploads stay under
``BULK_MAX_UPLOAD_BYTES`` (Salesforce takes 150 MB per job), several jobs when the data is bigger.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from campaign_pipeline.salesforce.bulk_polling import JobPoller
from campaign_pipeline.salesforce.engine.context import BULK_MAX_UPLOAD_BYTES, SyncContext
from campaign_pipeline.salesforce.engine.encoding import bulk_csv, payloads, read_bulk_csv, row_identity
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.engine.report import KindOutcome
from campaign_pipeline.salesforce.engine.sobject_collections import send_collections
from campaign_pipeline.salesforce.resource import TRANSIENT_RECORD_ERRORS, SalesforceCallFailed

logger = logging.getLogger(__name__)

BULK_POLL_LIMIT = 600
BULK_POLL_MAX_SECONDS = 30.0
BULK_JOB_WRITE_CALLS = 3  # create job, upload CSV, UploadComplete
# Job states after a close took effect.
_CLOSED_STATES = frozenset({"UploadComplete", "InProgress", "JobComplete", "Failed", "Aborted"})


def upload_splits(csv_text: str, rows: int, max_bytes: int = BULK_MAX_UPLOAD_BYTES) -> int:
    """How many equal parts ``rows`` must be cut into so each part's CSV stays under ``max_bytes`` (estimated
    from the whole upload's size; ``send_bulk`` checks each part again and halves one that is still too big)."""
    size = len(csv_text.encode("utf-8"))
    if size <= max_bytes or rows <= 1:
        return 1
    return min(rows, -(-size // max_bytes) + 1)


def send_bulk(
    ctx: SyncContext, kind: RecordKind, rows: pd.DataFrame, action: str, outcome: KindOutcome, depth: int = 0
) -> None:
    """Send ``rows`` (one action) as one ingest job; lock errors go again (as a job, or Collections if few)."""
    client = ctx.client
    rows = rows.reset_index(drop=True)
    records = payloads(kind, rows, action, ctx.fields.types_of(kind), ctx.fields.create_only_of(kind))
    cells, columns, csv_text = bulk_csv(records, for_update=action == "update")
    parts = upload_splits(csv_text, len(rows), ctx.max_upload_bytes)
    if parts > 1:
        for part in range(parts):
            start, end = part * len(rows) // parts, (part + 1) * len(rows) // parts
            send_bulk(ctx, kind, rows.iloc[start:end], action, outcome, depth)
        return
    if action == "create":
        ctx.ledger.record_pending(kind.name, rows)
    operation = "update" if action == "update" else ("upsert" if kind.external_id_field else "insert")
    try:
        successful, failed = _bulk_job(ctx, kind, operation, csv_text, len(rows))
    except SalesforceCallFailed as failure:
        ctx.record_call_failure(kind, rows, outcome, action, failure)
        return
    # Results echo the uploaded cells, not our keys: pair them back by cell content, in order for repeats.
    identity = row_identity(cells, columns)
    position_of = pd.Series(
        range(len(rows)), index=identity + "\x1e" + identity.groupby(identity).cumcount().astype(str)
    )
    retry_positions: list[int] = []
    failed_positions: set[int] = set()
    ok_ids: dict[int, str] = {}
    created_positions: set[int] = set()
    for result_rows, is_ok in ((successful, True), (failed, False)):
        if result_rows.empty:
            continue
        result_identity = row_identity(result_rows, columns)
        keys = result_identity + "\x1e" + result_identity.groupby(result_identity).cumcount().astype(str)
        positions = keys.map(position_of)
        if is_ok:
            for position, sf_id, was_created in zip(
                positions,
                result_rows["sf__Id"],
                result_rows.get("sf__Created", pd.Series("false", index=result_rows.index)),
                strict=True,
            ):
                if pd.notna(position):
                    ok_ids[int(position)] = sf_id
                    if str(was_created).lower() == "true":
                        created_positions.add(int(position))
        else:
            errors = result_rows["sf__Error"].fillna("")
            codes = errors.str.split(":", n=1).str[0]
            messages = errors.str.split(":", n=1).str[1].fillna("").str.strip()
            valid = positions.notna()
            positions_ok = positions[valid].astype(int)
            lock = codes[valid].isin(TRANSIENT_RECORD_ERRORS).to_numpy() & (depth < client.max_retries)
            retry_positions += positions_ok[lock].tolist()
            hard = positions_ok[~lock].tolist()
            failed_positions.update(hard)
            hard_rows = rows.iloc[hard]
            ctx.book.record(
                kind,
                hard_rows,
                hard_rows["salesforce_id"],
                "error",
                pd.Series(codes[valid][~lock].to_numpy(), index=hard_rows.index),
                pd.Series(messages[valid][~lock].to_numpy(), index=hard_rows.index),
            )
            outcome.add("failed", hard_rows)
    if ok_ids:
        done_rows = rows.iloc[sorted(ok_ids)]
        ctx.book.record(
            kind, done_rows, pd.Series([ok_ids[p] for p in sorted(ok_ids)], index=done_rows.index), "ok", None, None
        )
        if action == "create" and operation == "upsert":
            created_rows = pd.Series([p in created_positions for p in sorted(ok_ids)], index=done_rows.index)
            outcome.add("created", done_rows[created_rows])
            outcome.add("updated", done_rows[~created_rows])
        else:
            outcome.add("created" if action == "create" else "updated", done_rows)
    answered = set(ok_ids) | set(retry_positions) | failed_positions
    unanswered = [position for position in range(len(rows)) if position not in answered]
    if unanswered:
        # Neither succeeded nor failed (unprocessed): a create may or may not exist, so look it up next run.
        lost = rows.iloc[unanswered]
        result = "pending" if action == "create" else "error"
        ctx.book.record(
            kind, lost, lost["salesforce_id"], result, "NOT_PROCESSED", "Bulk job did not process the record"
        )
        outcome.add("failed", lost)
    if retry_positions:
        client.stats.retries += 1
        client.sleep(client.backoff_seconds * (2**depth))
        retry_rows = rows.iloc[retry_positions]
        if len(retry_rows) >= ctx.settings.bulk_threshold:
            send_bulk(ctx, kind, retry_rows, action, outcome, depth + 1)
        else:
            send_collections(ctx, kind, retry_rows, action, outcome)


def _bulk_job(
    ctx: SyncContext, kind: RecordKind, operation: str, csv_text: str, expected: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One job's lifecycle: create, upload, UploadComplete, poll until it ends; (successful, failed) results."""
    client = ctx.client
    spec: dict[str, str | None] = {
        "object": kind.sobject,
        "operation": operation,
        "contentType": "CSV",
        "lineEnding": "LF",
    }
    if operation == "upsert":
        spec["externalIdFieldName"] = kind.external_id_field
    what = f"Bulk API 2.0 {operation} of {expected} {kind.sobject} record(s)"
    # Unanswered, a job creation may have made an (empty, Open) job; nothing was uploaded to it, so the records
    # stay pending (SalesforceCallFailed.outcome_unknown) and Salesforce discards the open job after a day.
    job = client.rest("write", f"{what}: create job", "POST", "jobs/ingest", data=json.dumps(spec), idempotent=False)
    job_path = f"jobs/ingest/{job['id']}"
    try:
        client.raw(
            "write",
            f"{what}: upload",
            "PUT",
            f"{job_path}/batches",
            data=csv_text.encode("utf-8"),
            headers={"Content-Type": "text/csv"},
            idempotent=False,
        )
    except SalesforceCallFailed as failure:
        if not failure.outcome_unknown:
            raise
        # The data may have arrived: never upload it twice. Closing the job lets its results tell what it made;
        # rows it did not make stay pending for the next run's lookup.
        logger.warning("%s; closing job %s and reading its results instead of uploading again", failure, job["id"])
    try:
        client.rest("write", f"{what}: close", "PATCH", job_path, data=json.dumps({"state": "UploadComplete"}))
    except SalesforceCallFailed as failure:
        # A close whose answer was lost (the transport repeats a PATCH, and the repeat finds the job closed):
        # the job's own state says whether the close took effect.
        state = client.rest("read", f"{what}: status after close", "GET", job_path).get("state", "")
        if state not in _CLOSED_STATES:
            raise
        logger.warning("%s; job %s is %s, so the close took effect", failure, job["id"], state)
    state = ""
    # No job is done sooner than about a second per 100,000 records: a big job's first polls would find nothing.
    poller = JobPoller(expected, first=max(0.05, expected / 100_000), backoff_max=BULK_POLL_MAX_SECONDS)
    for _ in range(BULK_POLL_LIMIT):
        info = client.rest("read", f"{what}: status", "GET", job_path)
        state = info.get("state", "")
        if state in ("JobComplete", "Failed", "Aborted"):
            break
        client.sleep(poller.next_wait(int(info.get("numberRecordsProcessed") or 0)))
    if state != "JobComplete":
        message = info.get("errorMessage") or state
        raise SalesforceCallFailed(f"{what}: job {job['id']} ended {state}: {message}", error_code="BULK_JOB_FAILED")
    successful = _bulk_results(ctx, f"{what}: successful results", f"{job_path}/successfulResults")
    failed = (
        _bulk_results(ctx, f"{what}: failed results", f"{job_path}/failedResults")
        if info.get("numberRecordsFailed", 1)
        else pd.DataFrame()
    )
    return successful, failed


def _bulk_results(ctx: SyncContext, what: str, path: str) -> pd.DataFrame:
    response = ctx.client.raw("read", what, "GET", path, headers={"Accept": "text/csv"})
    # Results are UTF-8 CSV, often without a charset in Content-Type (requests would then guess Latin-1 and
    # non-ASCII rows would never pair back with ours).
    return read_bulk_csv(response.content.decode("utf-8"))
