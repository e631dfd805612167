"""Bulk API 2.0 query jobs of the sandbox org: a query's rows snapshotted when the job runs, read back in CSV pages.

As Salesforce documents them: POST jobs/query creates a job (operation ``query`` or ``queryAll``, the latter with
deleted records), GET jobs/query/{id} tells its state, GET jobs/query/{id}/results?maxRecords=N[&locator=L] gives
CSV pages with the ``Sforce-Locator`` header naming the next page (the text ``null`` after the last) and
``Sforce-NumberOfRecords``. The rows are those of the moment the job ran: records changed afterwards do not move
between pages. Bulk queries refuse what Bulk API 2.0 refuses (COUNT(), OFFSET).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import threading
from typing import Any

from campaign_pipeline.sandbox.salesforce_objects import API_USER_ID, make_record_id
from campaign_pipeline.sandbox.salesforce_paging import QueryingStore
from campaign_pipeline.sandbox.salesforce_soql import compile_order, parse_soql
from campaign_pipeline.sandbox.salesforce_state import RequestError, copy_rows, now_text

# Without maxRecords Salesforce picks a page size itself; this is the sandbox's pick.
DEFAULT_RESULTS_PAGE = 50_000
# Query jobs over this many rows run in a background thread, so the create call stays inside client timeouts.
BULK_QUERY_SYNC_ROWS = 20_000
SNAPSHOT_BATCH_ROWS = 20_000
logger = logging.getLogger(__name__)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # Bulk CSV writes instants as 2024-05-01T10:00:00.000Z where REST writes +0000.
    if len(text) == 28 and text.endswith("+0000") and text[10] == "T":
        return text[:-5] + "Z"
    return text


def _locator(job_id: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{job_id}:{position}".encode()).decode().rstrip("=")


def _position(job_id: str, locator: str) -> int:
    try:
        padded = locator + "=" * (-len(locator) % 4)
        owner, _, position = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        if owner == job_id and position.isdigit():
            return int(position)
    except (ValueError, UnicodeDecodeError):
        pass
    raise RequestError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")


class BulkQueryStore(QueryingStore):
    """Query jobs in the bulk_query_jobs table, their snapshotted CSV rows in bulk_query_rows."""

    def create_query_job(self, request: dict[str, Any], version: str) -> dict[str, Any]:
        operation = request.get("operation")
        if operation not in ("query", "queryAll"):
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        if request.get("contentType", "CSV") != "CSV":
            raise RequestError(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        if request.get("columnDelimiter", "COMMA") != "COMMA":
            raise RequestError(400, "FEATURENOTENABLED", "The sandbox org supports only COMMA column delimiters")
        line_ending = request.get("lineEnding", "LF")
        if line_ending not in ("LF", "CRLF"):
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}")
        soql = str(request.get("query") or "")
        query = parse_soql(soql, self.objects)
        if query.count_only or query.offset is not None:
            raise RequestError(
                400, "API_ERROR", "Bulk API 2.0 query does not support COUNT() or OFFSET; use the Query API"
            )
        include_deleted = operation == "queryAll"
        with self.cursor() as cursor:
            cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number')")
            job_id = make_record_id("750", cursor.fetchone()[0])
            params: list[Any] = []
            base = self._page_sql(query, params, include_deleted=include_deleted)
            cursor.execute(f"SELECT count(*) {base}", params)
            matching = int(cursor.fetchone()[0])
            if query.limit is not None:
                matching = min(matching, int(query.limit))
            stamp = now_text()
            info = {
                "id": job_id,
                "operation": operation,
                "object": query.sobject.name,
                "createdById": API_USER_ID,
                "createdDate": stamp,
                "systemModstamp": stamp,
                "state": "InProgress",
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(version),
                "lineEnding": line_ending,
                "columnDelimiter": "COMMA",
                "numberRecordsProcessed": 0,
                "retries": 0,
                "totalProcessingTime": 0,
                "header": [field.name for field in query.fields],
            }
            cursor.execute(
                f'INSERT INTO "{self.schema}".bulk_query_jobs (id, info) VALUES (%s, %s)', (job_id, json.dumps(info))
            )
        if matching <= BULK_QUERY_SYNC_ROWS:
            # Small jobs are done before the answer (the first status call sees JobComplete: call counts in tests
            # stay deterministic); big ones run in the background as Salesforce runs them, polls see InProgress.
            self._run_query_job(info, query, include_deleted)
        else:
            threading.Thread(
                target=self._run_query_job,
                args=(dict(info), query, include_deleted),
                name=f"bulk-query-{job_id}",
                daemon=True,
            ).start()
        # Salesforce answers the create before the job has run; its state is read back with GET.
        return {**self._public(info), "state": "UploadComplete", "numberRecordsProcessed": 0}

    def _run_query_job(self, info: dict[str, Any], query: Any, include_deleted: bool) -> None:
        """Snapshot the query's rows as CSV lines (the job's results), then mark the job JobComplete (or Failed)."""
        job_id = info["id"]
        try:
            connection = self.engine.raw_connection()
            try:
                params: list[Any] = []
                base = self._page_sql(query, params, include_deleted=include_deleted)
                limit = "" if query.limit is None else f" LIMIT {int(query.limit)}"
                # A server-side cursor read in batches: a million records never sit in memory at once.
                rows = connection.cursor(name=f"bulk_query_{job_id}")
                rows.execute(
                    f"SELECT fields {base} ORDER BY {compile_order(query.sobject, query.order_by)}{limit}", params
                )
                names = info["header"]
                writer = connection.cursor()
                number = 0
                while batch := rows.fetchmany(SNAPSHOT_BATCH_ROWS):
                    lines = []
                    for (record,) in batch:
                        number += 1
                        buffer = io.StringIO()
                        csv.writer(buffer, lineterminator="").writerow([_csv_value(record.get(name)) for name in names])
                        lines.append((job_id, number, buffer.getvalue()))
                    copy_rows(writer, f'"{self.schema}".bulk_query_rows', ("job_id", "row_number", "line"), lines)
                rows.close()
                info.update(state="JobComplete", numberRecordsProcessed=number, systemModstamp=now_text())
                writer.execute(
                    f'UPDATE "{self.schema}".bulk_query_jobs SET info = %s WHERE id = %s', (json.dumps(info), job_id)
                )
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()
        except Exception as exc:  # a query job that cannot run fails as a whole, as in Salesforce
            logger.exception("sandbox Bulk query job %s failed", job_id)
            info.update(state="Failed", errorMessage=f"InternalServerError : {type(exc).__name__}")
            with self.cursor() as cursor:
                cursor.execute(
                    f'UPDATE "{self.schema}".bulk_query_jobs SET info = %s WHERE id = %s', (json.dumps(info), job_id)
                )

    @staticmethod
    def _public(info: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in info.items() if key != "header"}

    def _query_job(self, job_id: str) -> dict[str, Any]:
        with self.cursor() as cursor:
            cursor.execute(f'SELECT info FROM "{self.schema}".bulk_query_jobs WHERE id = %s', (job_id,))
            row = cursor.fetchone()
        if row is None:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        return dict(row[0])

    def query_job_info(self, job_id: str) -> dict[str, Any]:
        return self._public(self._query_job(job_id))

    def query_job_results(self, job_id: str, locator: str | None, max_records: str | None) -> tuple[str, str, int]:
        """(CSV text with its header, next locator or 'null', rows on this page)."""
        info = self._query_job(job_id)
        if info["state"] != "JobComplete":
            raise RequestError(400, "API_ERROR", f"Job {job_id} is not complete (state {info['state']})")
        if max_records is not None and (not max_records.isdigit() or int(max_records) < 1):
            raise RequestError(400, "INVALIDMAXRECORDS", f"maxRecords must be a positive integer, got {max_records}")
        size = int(max_records) if max_records else DEFAULT_RESULTS_PAGE
        start = _position(job_id, locator) if locator else 0
        with self.cursor() as cursor:
            cursor.execute(
                f'SELECT line FROM "{self.schema}".bulk_query_rows WHERE job_id = %s AND row_number > %s '
                "ORDER BY row_number LIMIT %s",
                (job_id, start, size),
            )
            lines = [row[0] for row in cursor.fetchall()]
        header = io.StringIO()
        csv.writer(header, lineterminator="").writerow(info["header"])
        ending = "\r\n" if info.get("lineEnding") == "CRLF" else "\n"
        text = ending.join([header.getvalue(), *lines]) + ending
        end = start + len(lines)
        more = end < int(info["numberRecordsProcessed"])
        return text, _locator(job_id, end) if more else "null", len(lines)

    def delete_query_job(self, job_id: str) -> None:
        self._query_job(job_id)
        with self.cursor() as cursor:
            cursor.execute(f'DELETE FROM "{self.schema}".bulk_query_rows WHERE job_id = %s', (job_id,))
            cursor.execute(f'DELETE FROM "{self.schema}".bulk_query_jobs WHERE id = %s', (job_id,))
