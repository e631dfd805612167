"""Bulk API 2.0 ingest jobs of the sandbox org: create, upload CSV, process, results, delete."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from campaign_pipeline.sandbox.salesforce_objects import (
    API_USER_ID,
    make_record_id,
    object_spec,
    parse_datetime,
)
from campaign_pipeline.sandbox.salesforce_state import RequestError, SfError, WriteResult, copy_rows, now_text
from campaign_pipeline.sandbox.salesforce_writes import WritingStore

# Bulk jobs with more CSV than this are processed in the background after UploadComplete.
BULK_SYNC_BYTES = 4 * 1024 * 1024
# Records Salesforce processes (and commits) together inside one ingest job.
INTERNAL_BATCH_ROWS = 10_000
# An InProgress job untouched for this long lost its processing thread (its process ended).
STALE_JOB_SECONDS = 15 * 60
# Salesforce takes at most 150 MB of job data per upload, counted after it base64-encodes it (so ~112 MB of CSV).
MAX_UPLOAD_BASE64_BYTES = 150 * 1024 * 1024
LINE_TERMINATORS = {"LF": "\n", "CRLF": "\r\n"}
logger = logging.getLogger(__name__)


def _line_ending_of(text: str) -> str | None:
    """LF or CRLF, from the first line break of an upload (its header row cannot hold quoted newlines)."""
    position = text.find("\n")
    if position < 0:
        return None
    return "CRLF" if position > 0 and text[position - 1] == "\r" else "LF"


def _age_seconds(stamp: str) -> float:
    return (dt.datetime.now(dt.UTC) - parse_datetime(stamp)).total_seconds()


class BulkJobStore(WritingStore):
    """Bulk 2.0 job state in the bulk_jobs / bulk_job_data / bulk_job_results tables."""

    def create_job(self, request: dict[str, Any], version: str) -> dict[str, Any]:
        operation = request.get("operation")
        if operation not in ("insert", "update", "upsert", "delete"):
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        spec = object_spec(str(request.get("object") or ""), self.objects)
        if spec is None:
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Unable to find object: {request.get('object')}")
        blob = next((f for f in spec.fields if f.type == "base64"), None)
        if blob is not None:
            # Bulk API 2.0 takes CSV only, with no way to carry binary content (Bulk API 1.0 needed zip batches for
            # Attachments); refusing the job makes a client that sends Attachments by Bulk fail loudly here.
            raise RequestError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Entity '{spec.name}' is not supported by Bulk API 2.0: its field {blob.name} is "
                "binary (base64)",
            )
        external = request.get("externalIdFieldName")
        if operation == "upsert":
            external_spec = spec.field(str(external or ""))
            if external_spec is None or not (external_spec.external_id or external_spec.name == "Id"):
                raise RequestError(
                    400,
                    "INVALIDJOB",
                    f"InvalidJob : Field name provided, {external}, does not match an External ID for {spec.name}",
                )
            external = external_spec.name
        if request.get("contentType", "CSV") != "CSV":
            raise RequestError(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        if request.get("columnDelimiter", "COMMA") != "COMMA":
            raise RequestError(400, "FEATURENOTENABLED", "The sandbox org supports only COMMA column delimiters")
        line_ending = request.get("lineEnding", "LF")
        if line_ending not in ("LF", "CRLF"):
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}")
        with self.cursor() as cursor:
            cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number')")
            job_id = make_record_id("750", cursor.fetchone()[0])
            stamp = now_text()
            info = {
                "id": job_id,
                "operation": operation,
                "object": spec.name,
                "createdById": API_USER_ID,
                "createdDate": stamp,
                "systemModstamp": stamp,
                "state": "Open",
                "externalIdFieldName": external if operation == "upsert" else None,
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(version),
                "contentUrl": f"services/data/v{version}/jobs/ingest/{job_id}/batches",
                "lineEnding": line_ending,
                "columnDelimiter": "COMMA",
            }
            cursor.execute(
                f'INSERT INTO "{self.schema}".bulk_jobs (id, info) VALUES (%s, %s)', (job_id, json.dumps(info))
            )
        return info

    def job_info(self, job_id: str, *, detail: bool = True) -> dict[str, Any]:
        with self.cursor() as cursor:
            cursor.execute(f'SELECT info FROM "{self.schema}".bulk_jobs WHERE id = %s', (job_id,))
            row = cursor.fetchone()
        if row is None:
            raise RequestError(404, "NOT_FOUND", f"The requested resource does not exist: job {job_id}")
        info = dict(row[0])
        if info["state"] == "InProgress" and _age_seconds(info["systemModstamp"]) > STALE_JOB_SECONDS:
            # The process working on it is gone (its thread never finished): the job failed.
            info["state"] = "Failed"
            info["errorMessage"] = "InternalServerError : processing was interrupted"
        if detail:
            info.setdefault("numberRecordsProcessed", 0)
            info.setdefault("numberRecordsFailed", 0)
            info.setdefault("retries", 0)
            info.setdefault("totalProcessingTime", 0)
            info.setdefault("apiActiveProcessingTime", 0)
            info.setdefault("apexProcessingTime", 0)
            info["jobType"] = "V2Ingest"
        return info

    def _save_job(self, cursor: Any, info: dict[str, Any]) -> None:
        info["systemModstamp"] = now_text()
        cursor.execute(f'UPDATE "{self.schema}".bulk_jobs SET info = %s WHERE id = %s', (json.dumps(info), info["id"]))

    def upload_job_data(self, job_id: str, body: str) -> None:
        info = self.job_info(job_id, detail=False)
        if info["state"] != "Open":
            raise RequestError(
                409,
                "INVALIDJOBSTATE",
                f"Job {job_id} is in state {info['state']}; data can be uploaded only while Open",
            )
        if not body.strip():
            raise RequestError(400, "INVALIDBATCH", "InvalidBatch : no data uploaded")
        size = len(body.encode("utf-8"))
        encoded = 4 * ((size + 2) // 3)
        if encoded > MAX_UPLOAD_BASE64_BYTES:
            # The whole upload is refused and the job stays Open, so a client can split the data and retry.
            raise RequestError(
                413,
                "INVALIDBATCH",
                f"InvalidBatch : the upload is {size} bytes, {encoded} once base64-encoded; a job takes at most "
                f"{MAX_UPLOAD_BASE64_BYTES} bytes of base64-encoded data per upload (about 100 MB of CSV)",
            )
        with self.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO "{self.schema}".bulk_job_data (job_id, part, body)
                    SELECT %s, coalesce(max(part), 0) + 1, %s FROM "{self.schema}".bulk_job_data WHERE job_id = %s""",
                (job_id, body, job_id),
            )

    def set_job_state(self, job_id: str, state: str, lock_fault: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Abort a job, or close its upload and process it.

        Small jobs are processed before the answer (the first poll sees JobComplete, which keeps
        call counts in tests deterministic); jobs over BULK_SYNC_BYTES of CSV are processed in a
        background thread (polls see InProgress), so the close call stays well inside client timeouts.
        As in Salesforce, the answer to UploadComplete says UploadComplete.
        """
        info = self.job_info(job_id, detail=False)
        if state == "Aborted":
            if info["state"] in ("JobComplete", "Failed"):
                raise RequestError(400, "INVALIDJOBSTATE", f"Job {job_id} is already {info['state']}")
            info["state"] = "Aborted"
            with self.cursor() as cursor:
                self._save_job(cursor, info)
            return self.job_info(job_id, detail=False)
        if state != "UploadComplete":
            raise RequestError(400, "INVALIDJOBSTATE", f"Unsupported job state change to {state!r}")
        if info["state"] != "Open":
            raise RequestError(400, "INVALIDJOBSTATE", f"Job {job_id} is in state {info['state']}, not Open")
        with self.cursor() as cursor:
            cursor.execute(
                f'SELECT coalesce(sum(length(body)), 0) FROM "{self.schema}".bulk_job_data WHERE job_id = %s', (job_id,)
            )
            size = cursor.fetchone()[0]
        if size <= BULK_SYNC_BYTES:
            self._run_job(info, lock_fault)
        else:
            info["state"] = "InProgress"
            with self.cursor() as cursor:
                self._save_job(cursor, info)
            threading.Thread(
                target=self._run_job, args=(dict(info), lock_fault), name=f"bulk-job-{job_id}", daemon=True
            ).start()
        return {**info, "state": "UploadComplete"}

    def _run_job(self, info: dict[str, Any], lock_fault: Callable[[], bool] | None) -> None:
        try:
            self._process_job(info, lock_fault)
        except Exception as exc:  # a job that cannot be processed fails as a whole, as in Salesforce
            logger.exception("sandbox Bulk job %s failed", info["id"])
            info["state"] = "Failed"
            info["errorMessage"] = f"InternalServerError : {type(exc).__name__}"
        with self.cursor() as cursor:
            self._save_job(cursor, info)

    def _process_job(self, info: dict[str, Any], lock_fault: Callable[[], bool] | None) -> None:
        job_id = info["id"]
        with self.cursor() as cursor:
            cursor.execute(f'SELECT body FROM "{self.schema}".bulk_job_data WHERE job_id = %s ORDER BY part', (job_id,))
            parts = [r[0] for r in cursor.fetchall()]
        if not parts:
            info["state"] = "Failed"
            info["errorMessage"] = "InvalidBatch : no data uploaded"
            return
        header: list[str] | None = None
        data_rows: list[list[str]] = []
        for part in parts:
            found = _line_ending_of(part)
            if found is not None and found != info["lineEnding"]:
                # What Salesforce reports when the data's line breaks are not the ones the job declared.
                info["state"] = "Failed"
                info["errorMessage"] = (
                    f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is "
                    f"{info['lineEnding']}"
                )
                return
            reader = csv.reader(io.StringIO(part, newline=""))
            part_header = next(reader, None)
            if header is None:
                header = part_header
            elif part_header != header:
                info["state"] = "Failed"
                info["errorMessage"] = "InvalidBatch : all uploads of a job must have the same header"
                return
            data_rows.extend(reader)
        assert header is not None
        spec = self.objects[info["object"]]
        for column in header:
            if spec.field(column) is None:
                info["state"] = "Failed"
                info["errorMessage"] = f"InvalidBatch : Field name not found : {column}"
                return
        results: list[WriteResult]
        if info["operation"] == "delete":
            if [c.lower() for c in header] != ["id"]:
                info["state"] = "Failed"
                info["errorMessage"] = "InvalidBatch : The 'delete' batch must contain only 'Id'"
                return
            results = self.delete([row[0] if row else "" for row in data_rows])
        else:
            # A row whose cell count differs from the header's fails alone; the others are written.
            well_formed = [index for index, row in enumerate(data_rows) if len(row) == len(header)]
            rows = [dict(zip(header, data_rows[index], strict=True)) for index in well_formed]
            written: list[WriteResult] = []
            # Salesforce works a job through in internal batches of 10,000 records, each committed on its own, and
            # the job's numberRecordsProcessed / numberRecordsFailed grow batch by batch while it is InProgress.
            for start in range(0, len(rows), INTERNAL_BATCH_ROWS):
                written += self.write(
                    spec.name,
                    info["operation"],
                    rows[start : start + INTERNAL_BATCH_ROWS],
                    external_id_field=info.get("externalIdFieldName"),
                    from_csv=True,
                    lock_fault=lock_fault,
                )
                if info["state"] == "InProgress" and len(written) < len(rows):
                    info["numberRecordsProcessed"] = len(written)
                    info["numberRecordsFailed"] = sum(1 for r in written if not r.success)
                    with self.cursor() as cursor:
                        self._save_job(cursor, info)
            results = [
                WriteResult(
                    errors=[
                        SfError("INVALID_INPUT", f"row has {len(row)} cells but the header has {len(header)} columns")
                    ]
                )
                for row in data_rows
            ]
            for index, result in zip(well_formed, written, strict=True):
                results[index] = result
        with self.cursor() as cursor:
            copy_rows(
                cursor,
                f'"{self.schema}".bulk_job_results',
                ("job_id", "row_number", "outcome", "sf_id", "created", "error", "row_values"),
                (
                    (
                        job_id,
                        str(index),
                        "success" if result.success else "failed",
                        result.id or "",
                        "true" if result.created else "false",
                        None if result.success else result.errors[0].bulk(),
                        row,
                    )
                    for index, (result, row) in enumerate(zip(results, data_rows, strict=True))
                ),
            )
        info["state"] = "JobComplete"
        info["numberRecordsProcessed"] = len(results)
        info["numberRecordsFailed"] = sum(1 for r in results if not r.success)
        info["columns"] = header

    def job_results(self, job_id: str, kind: str) -> str:
        """successfulResults / failedResults / unprocessedrecords as Salesforce's CSV."""
        info = self.job_info(job_id, detail=False)
        if kind != "unprocessedrecords" and info["state"] not in ("JobComplete", "Failed", "Aborted"):
            raise RequestError(400, "INVALIDJOBSTATE", f"Job {job_id} is not complete yet (state {info['state']})")
        columns = info.get("columns") or []
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=LINE_TERMINATORS[info.get("lineEnding", "LF")])
        if kind == "unprocessedrecords":
            writer.writerow(columns)
            return buffer.getvalue()
        outcome = "success" if kind == "successfulResults" else "failed"
        writer.writerow(["sf__Id", "sf__Created" if outcome == "success" else "sf__Error", *columns])
        with self.cursor() as cursor:
            cursor.execute(
                f"""SELECT sf_id, created, error, row_values FROM "{self.schema}".bulk_job_results
                    WHERE job_id = %s AND outcome = %s ORDER BY row_number""",
                (job_id, outcome),
            )
            for sf_id, created, error, row_values in cursor.fetchall():
                second = ("true" if created else "false") if outcome == "success" else error
                writer.writerow([sf_id, second, *row_values])
        return buffer.getvalue()

    def list_jobs(self) -> list[dict[str, Any]]:
        with self.cursor() as cursor:
            cursor.execute(f'SELECT info FROM "{self.schema}".bulk_jobs ORDER BY id')
            return [r[0] for r in cursor.fetchall()]

    def delete_job(self, job_id: str) -> None:
        self.job_info(job_id, detail=False)
        with self.cursor() as cursor:
            for table in ("bulk_job_results", "bulk_job_data"):
                cursor.execute(f'DELETE FROM "{self.schema}".{table} WHERE job_id = %s', (job_id,))
            cursor.execute(f'DELETE FROM "{self.schema}".bulk_jobs WHERE id = %s', (job_id,))
