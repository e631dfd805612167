"""Postgres state of the sandbox org: records, sessions, API usage, query cursors and Bulk 2.0 jobs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from campaign_pipeline.sandbox.salesforce_objects import (
    API_USER_ID,
    API_VERSION,
    OBJECTS,
    ORG_ID,
    REFERENCE_TYPES,
    TEXT_TYPES,
    FieldSpec,
    ObjectSpec,
    ValueTypeError,
    coerce_value,
    format_datetime,
    make_record_id,
    normalize_id,
    object_of_id,
    object_spec,
    parse_datetime,
    value_length,
)
from campaign_pipeline.sandbox.salesforce_soql import (
    SoqlError,
    SoqlQuery,
    compile_condition,
    compile_order,
    parse_soql,
)

QUERY_PAGE_SIZE = 2000
# Bulk jobs with more CSV than this are processed in the background after UploadComplete.
BULK_SYNC_BYTES = 4 * 1024 * 1024
ANALYZE_AFTER_ROWS = 1000
# An InProgress job untouched for this long lost its processing thread (its process ended).
STALE_JOB_SECONDS = 15 * 60
logger = logging.getLogger(__name__)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_MEMBER_STATUSES = (("Sent", False, True, 1), ("Responded", True, False, 2))


@dataclass(frozen=True)
class SfError:
    """One Salesforce error: code, message and the fields it concerns."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def rest(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.status_code, "fields": list(self.fields)}

    def collection(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}

    def bulk(self) -> str:
        return f"{self.status_code}:{self.message}:{','.join(self.fields)} --"


@dataclass
class WriteResult:
    id: str | None = None
    success: bool = False
    created: bool = False
    errors: list[SfError] = field(default_factory=list)

    def collection(self, with_created: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "success": self.success,
            "errors": [e.collection() for e in self.errors],
        }
        if with_created:
            result["created"] = self.created
        return result


class RequestError(Exception):
    """A request refused as a whole: HTTP status plus Salesforce's error body."""

    def __init__(self, http_status: int, error_code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error = SfError(error_code, message, tuple(fields))


def _now() -> str:
    return format_datetime(dt.datetime.now(dt.UTC))


def _text_copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_rows(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Load rows with one COPY (text format); values are str, None, or JSON-encoded otherwise."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_text_copy_value(v) for v in row))
        buffer.write("\n")
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


def _person_name(fields: dict[str, Any]) -> str:
    return " ".join(part for part in (fields.get("FirstName"), fields.get("LastName")) if part)


class SalesforceStore:
    """All org state, in one Postgres schema; every method is one transaction."""

    def __init__(self, engine: sa.Engine, schema: str) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"sandbox schema name {schema!r} must be a lower-case SQL identifier")
        self.engine = engine
        self.schema = schema
        self.records_table = f'"{schema}".records'

    # --- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            yield cursor
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def _lock(self, cursor: Any, name: str) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"sandbox_salesforce:{self.schema}:{name}",))

    def ensure_schema(self) -> None:
        """Create the schema and tables if missing; safe when several processes start at once."""
        s = f'"{self.schema}"'
        lock_key = f"sandbox_salesforce:{self.schema}:schema"
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            # A session lock, with the DDL in a transaction begun after it is granted: a transaction
            # that was already open while another process created the schema can miss that in its
            # catalog cache, and CREATE SCHEMA IF NOT EXISTS then fails with a duplicate key.
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key,))
            connection.commit()
            try:
                self._create_tables(cursor, s)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key,))
                connection.commit()
        finally:
            connection.close()

    @staticmethod
    def _create_tables(cursor: Any, s: str) -> None:
        cursor.execute(
            f"""
                CREATE SCHEMA IF NOT EXISTS {s};
                CREATE SEQUENCE IF NOT EXISTS {s}.record_number;
                CREATE TABLE IF NOT EXISTS {s}.records (
                    id text PRIMARY KEY,
                    sobject text NOT NULL,
                    seq bigint NOT NULL,
                    fields jsonb NOT NULL,
                    ext_key text,
                    member_key text
                );
                CREATE UNIQUE INDEX IF NOT EXISTS records_ext_key ON {s}.records (sobject, ext_key)
                    WHERE ext_key IS NOT NULL;
                CREATE UNIQUE INDEX IF NOT EXISTS records_member_key ON {s}.records (sobject, member_key)
                    WHERE member_key IS NOT NULL;
                CREATE INDEX IF NOT EXISTS records_sobject_seq ON {s}.records (sobject, seq);
                CREATE INDEX IF NOT EXISTS records_email ON {s}.records (sobject, lower(fields->>'Email'));
                CREATE INDEX IF NOT EXISTS records_campaign ON {s}.records (sobject, (fields->>'CampaignId'));
                CREATE TABLE IF NOT EXISTS {s}.sessions (
                    token text PRIMARY KEY,
                    valid boolean NOT NULL DEFAULT true,
                    created_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE TABLE IF NOT EXISTS {s}.api_usage (day date PRIMARY KEY, used integer NOT NULL);
                CREATE TABLE IF NOT EXISTS {s}.query_cursors (
                    locator text PRIMARY KEY,
                    soql text NOT NULL,
                    total integer NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE TABLE IF NOT EXISTS {s}.bulk_jobs (id text PRIMARY KEY, info jsonb NOT NULL);
                CREATE TABLE IF NOT EXISTS {s}.bulk_job_data (
                    job_id text NOT NULL, part integer NOT NULL, body text NOT NULL,
                    PRIMARY KEY (job_id, part)
                );
                CREATE TABLE IF NOT EXISTS {s}.bulk_job_results (
                    job_id text NOT NULL,
                    row_number integer NOT NULL,
                    outcome text NOT NULL,
                    sf_id text,
                    created boolean,
                    error text,
                    row_values jsonb NOT NULL,
                    PRIMARY KEY (job_id, row_number)
                );
                CREATE TABLE IF NOT EXISTS {s}.seed_state (name text PRIMARY KEY, summary jsonb NOT NULL);
                """
        )

    def reset(self) -> None:
        """Delete all data (records, cursors, jobs, usage, seed marker); sessions stay valid."""
        s = f'"{self.schema}"'
        with self.cursor() as cursor:
            self._lock(cursor, "schema")
            cursor.execute(
                f"TRUNCATE {s}.records, {s}.query_cursors, {s}.bulk_jobs, {s}.bulk_job_data, "
                f"{s}.bulk_job_results, {s}.api_usage, {s}.seed_state"
            )

    # --- sessions and API usage -------------------------------------------------------------------

    def new_session(self) -> str:
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(40)}"
        with self.cursor() as cursor:
            cursor.execute(f'INSERT INTO "{self.schema}".sessions (token) VALUES (%s)', (token,))
        return token

    def expire_session(self, token: str) -> None:
        with self.cursor() as cursor:
            cursor.execute(f'UPDATE "{self.schema}".sessions SET valid = false WHERE token = %s', (token,))

    def check_request(self, token: str | None, daily_limit: int, *, count: bool) -> tuple[bool, int, bool]:
        """Validate the session and count the call: (session valid, API calls used today, within quota)."""
        s = f'"{self.schema}"'
        with self.cursor() as cursor:
            cursor.execute(f"SELECT valid FROM {s}.sessions WHERE token = %s", (token or "",))
            row = cursor.fetchone()
            if not row or not row[0]:
                return False, 0, True
            if count:
                cursor.execute(
                    f"""INSERT INTO {s}.api_usage AS u (day, used) VALUES ((now() AT TIME ZONE 'UTC')::date, 1)
                        ON CONFLICT (day) DO UPDATE SET used = u.used + 1 WHERE u.used < %s
                        RETURNING used""",
                    (daily_limit,),
                )
                counted = cursor.fetchone()
                if counted:
                    return True, counted[0], True
            cursor.execute(f"SELECT used FROM {s}.api_usage WHERE day = (now() AT TIME ZONE 'UTC')::date")
            used = cursor.fetchone()
            used_today = used[0] if used else 0
            return True, used_today, used_today < daily_limit or not count

    def api_calls_used(self) -> int:
        with self.cursor() as cursor:
            cursor.execute(f"SELECT used FROM \"{self.schema}\".api_usage WHERE day = (now() AT TIME ZONE 'UTC')::date")
            row = cursor.fetchone()
        return row[0] if row else 0

    # --- reading records -------------------------------------------------------------------------

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        with self.cursor() as cursor:
            cursor.execute(
                f"SELECT fields FROM {self.records_table} WHERE id = %s AND sobject = %s", (record_id, sobject)
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def find_by_external_id(self, spec: ObjectSpec, field_name: str, value: str) -> list[str]:
        external = spec.external_id_field
        with self.cursor() as cursor:
            if external is not None and external.name == field_name:
                cursor.execute(
                    f"SELECT id FROM {self.records_table} WHERE sobject = %s AND ext_key = %s",
                    (spec.name, value.lower()),
                )
            else:
                cursor.execute(
                    f"SELECT id FROM {self.records_table} WHERE sobject = %s AND lower(fields->>%s) = %s ORDER BY seq",
                    (spec.name, field_name, value.lower()),
                )
            return [r[0] for r in cursor.fetchall()]

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every record of a type, in creation order (for tests and benchmarks)."""
        with self.cursor() as cursor:
            cursor.execute(f"SELECT fields FROM {self.records_table} WHERE sobject = %s ORDER BY seq", (sobject,))
            return [r[0] for r in cursor.fetchall()]

    # --- SOQL ----------------------------------------------------------------------------------

    def _page_sql(self, query: SoqlQuery, params: list[Any]) -> str:
        where = "sobject = %s"
        params.append(query.sobject.name)
        if query.where is not None:
            where += " AND " + compile_condition(query.sobject, query.where, params)
        return f"FROM {self.records_table} WHERE {where}"

    @staticmethod
    def render_record(
        spec: ObjectSpec, record: dict[str, Any], fields: Sequence[FieldSpec], version: str
    ) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "attributes": {"type": spec.name, "url": f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}"}
        }
        for field_spec in fields:
            if field_spec.type == "base64" and record.get(field_spec.name) is not None:
                # REST returns a blob URL for base64 fields, not the content.
                rendered[field_spec.name] = (
                    f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}/{field_spec.name}"
                )
            else:
                rendered[field_spec.name] = record.get(field_spec.name)
        return rendered

    def _fetch_page(self, query: SoqlQuery, start: int, size: int, version: str) -> list[dict[str, Any]]:
        params: list[Any] = []
        base = self._page_sql(query, params)
        order = compile_order(query.sobject, query.order_by)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT fields {base} ORDER BY {order} LIMIT %s OFFSET %s", [*params, size, start])
            rows = [r[0] for r in cursor.fetchall()]
        return [self.render_record(query.sobject, r, query.fields, version) for r in rows]

    def query(self, soql: str, version: str = API_VERSION, page_size: int = QUERY_PAGE_SIZE) -> dict[str, Any]:
        """Run a SOQL query: its first page, with a nextRecordsUrl when more rows remain."""
        query = parse_soql(soql)
        params: list[Any] = []
        base = self._page_sql(query, params)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT count(*) {base}", params)
            matched = cursor.fetchone()[0]
        offset = query.offset or 0
        total = max(0, matched - offset)
        if query.limit is not None:
            total = min(total, query.limit)
        if query.count_only:
            return {"totalSize": total, "done": True, "records": []}
        records = self._fetch_page(query, offset, min(page_size, total), version) if total else []
        result: dict[str, Any] = {"totalSize": total, "done": total <= page_size, "records": records}
        if total > page_size:
            with self.cursor() as cursor:
                cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number')")
                locator = make_record_id("01g", cursor.fetchone()[0])
                cursor.execute(
                    f'INSERT INTO "{self.schema}".query_cursors (locator, soql, total) VALUES (%s, %s, %s)',
                    (locator, soql, total),
                )
            result["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{page_size}"
        return result

    def query_more(
        self, locator_and_position: str, version: str = API_VERSION, page_size: int = QUERY_PAGE_SIZE
    ) -> dict[str, Any]:
        locator, _, position_text = locator_and_position.rpartition("-")
        with self.cursor() as cursor:
            cursor.execute(f'SELECT soql, total FROM "{self.schema}".query_cursors WHERE locator = %s', (locator,))
            row = cursor.fetchone()
        if row is None or not position_text.isdigit():
            raise RequestError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        soql, total = row
        position = int(position_text)
        query = parse_soql(soql)
        size = max(0, min(page_size, total - position))
        records = self._fetch_page(query, (query.offset or 0) + position, size, version)
        result: dict[str, Any] = {"totalSize": total, "done": position + size >= total, "records": records}
        if not result["done"]:
            result["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{position + size}"
        return result

    # --- writing records -------------------------------------------------------------------------

    def _allocate_ids(self, cursor: Any, spec: ObjectSpec, count: int) -> list[str]:
        if count == 0:
            return []
        cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number') FROM generate_series(1, %s)", (count,))
        return [make_record_id(spec.key_prefix, r[0]) for r in cursor.fetchall()]

    @staticmethod
    def _keys(spec: ObjectSpec, fields: dict[str, Any]) -> tuple[str | None, str | None]:
        """The indexed external-Id key and the per-object uniqueness key of a record."""
        external = spec.external_id_field
        ext_value = fields.get(external.name) if external is not None else None
        ext_key = ext_value.lower() if isinstance(ext_value, str) and ext_value else None
        member_key = None
        if spec.name == "CampaignMember":
            member_key = f"{fields.get('CampaignId')}|{fields.get('ContactId') or fields.get('LeadId')}"
        elif spec.name == "CampaignMemberStatus":
            member_key = f"{fields.get('CampaignId')}|{str(fields.get('Label') or '').lower()}"
        return ext_key, member_key

    def _insert(self, cursor: Any, spec: ObjectSpec, new_records: list[dict[str, Any]]) -> None:
        """Give records Ids and timestamps and load them with one COPY."""
        ids = self._allocate_ids(cursor, spec, len(new_records))
        stamp = _now()
        rows = []
        for record_id, fields_ in zip(ids, new_records, strict=True):
            fields_["Id"] = record_id
            fields_.setdefault("CreatedDate", stamp)
            fields_["LastModifiedDate"] = stamp
            if spec.name in ("Contact", "Lead"):
                fields_["Name"] = _person_name(fields_)
            # seq is the Id's own counter, so creation order holds across processes and restarts.
            rows.append((record_id, spec.name, str(_id_number(record_id)), fields_, *self._keys(spec, fields_)))
        if rows:
            _copy_rows(
                cursor,
                self.records_table,
                ("id", "sobject", "seq", "fields", "ext_key", "member_key"),
                rows,
            )
        if len(rows) >= ANALYZE_AFTER_ROWS:
            # Fresh statistics right away: with stale ones the planner scans every record of the
            # type instead of using the email / campaign indexes, and matching queries crawl.
            cursor.execute(f"ANALYZE {self.records_table}")

    def _update(self, cursor: Any, spec: ObjectSpec, changed: list[dict[str, Any]]) -> None:
        if not changed:
            return
        stamp = _now()
        for fields_ in changed:
            fields_["LastModifiedDate"] = stamp
            if spec.name in ("Contact", "Lead"):
                fields_["Name"] = _person_name(fields_)
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sf_sandbox_update (id text, fields jsonb, ext_key text, member_key text) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE sf_sandbox_update")
        _copy_rows(
            cursor,
            "sf_sandbox_update",
            ("id", "fields", "ext_key", "member_key"),
            ((f["Id"], f, *self._keys(spec, f)) for f in changed),
        )
        cursor.execute(
            f"UPDATE {self.records_table} r SET fields = u.fields, ext_key = u.ext_key, member_key = u.member_key "
            "FROM sf_sandbox_update u WHERE r.id = u.id"
        )

    def insert_raw(self, sobject: str, new_records: list[dict[str, Any]]) -> list[str]:
        """Insert records without API validation (seeding: converted Leads, fixed CreatedDate...)."""
        spec = OBJECTS[sobject]
        with self.cursor() as cursor:
            self._lock(cursor, sobject)
            self._insert(cursor, spec, new_records)
            if sobject == "Campaign":
                self._create_default_statuses(cursor, [r["Id"] for r in new_records])
        return [r["Id"] for r in new_records]

    def _create_default_statuses(self, cursor: Any, campaign_ids: list[str]) -> None:
        statuses = [
            {"CampaignId": cid, "Label": label, "HasResponded": responded, "IsDefault": default, "SortOrder": order}
            for cid in campaign_ids
            for label, responded, default, order in DEFAULT_MEMBER_STATUSES
        ]
        self._insert(cursor, OBJECTS["CampaignMemberStatus"], statuses)

    def write(
        self,
        sobject: str,
        operation: str,
        rows: Sequence[dict[str, Any]],
        *,
        external_id_field: str | None = None,
        all_or_none: bool = False,
        from_csv: bool = False,
        lock_fault: Callable[[], bool] | None = None,
    ) -> list[WriteResult]:
        """Insert, update or upsert records as Salesforce does; one result per row, in order.

        Validation and writes are set-based (one query per check, one COPY per write) so Bulk
        jobs of 100k rows take seconds. Writers of one sObject type are serialized by an
        advisory lock, which keeps duplicate checks true across processes.
        """
        [results] = self.write_groups(
            [(sobject, rows)],
            operation,
            external_id_field=external_id_field,
            all_or_none=all_or_none,
            from_csv=from_csv,
            lock_fault=lock_fault,
        )
        return results

    def write_groups(
        self,
        groups: Sequence[tuple[str, Sequence[dict[str, Any]]]],
        operation: str,
        *,
        external_id_field: str | None = None,
        all_or_none: bool = False,
        from_csv: bool = False,
        lock_fault: Callable[[], bool] | None = None,
    ) -> list[list[WriteResult]]:
        """Write several sObject types in one transaction (a Collections call may mix types).

        With all_or_none, a failure in any group rolls back every group.
        """
        specs = []
        for sobject, _ in groups:
            spec = object_spec(sobject)
            if spec is None:
                raise RequestError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{sobject}'")
            specs.append(spec)
        outcome: list[list[WriteResult]] = []
        try:
            with self.cursor() as cursor:
                # Locks in name order, so two mixed-type writers cannot deadlock.
                for name in sorted({spec.name for spec in specs}):
                    self._lock(cursor, name)
                for spec, (_, rows) in zip(specs, groups, strict=True):
                    writer = _RecordWriter(self, cursor, spec, operation, external_id_field, from_csv, lock_fault)
                    outcome.append(writer.run(rows, all_or_none))
                if all_or_none and any(r.errors for group in outcome for r in group):
                    raise _RolledBack
        except _RolledBack:
            for group in outcome:
                _roll_back(group)
            for _, rows in groups[len(outcome) :]:
                outcome.append([WriteResult() for _ in rows])
                _roll_back(outcome[-1])
        return outcome

    def delete(self, record_ids: Sequence[str], all_or_none: bool = False) -> list[WriteResult]:
        results = [WriteResult(id=rid) for rid in record_ids]
        with self.cursor() as cursor:
            normalized = [normalize_id(rid) for rid in record_ids]
            cursor.execute(
                f"SELECT id, sobject, fields FROM {self.records_table} WHERE id = ANY(%s)",
                ([n for n in normalized if n],),
            )
            found = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
            doomed: list[str] = []
            for result, rid in zip(results, normalized, strict=True):
                if rid is None:
                    result.errors.append(SfError("MALFORMED_ID", f"malformed id {result.id}"))
                elif rid not in found:
                    result.errors.append(SfError("ENTITY_IS_DELETED", "entity is deleted"))
                elif found[rid][0] == "CampaignMemberStatus" and found[rid][1].get("IsDefault"):
                    result.errors.append(
                        SfError("DELETE_FAILED", "You can't delete the default campaign member status.")
                    )
                else:
                    result.id = rid
                    doomed.append(rid)
            if all_or_none and any(r.errors for r in results):
                _roll_back(results)
                return results
            if doomed:
                # Deleting a Campaign or person takes its members and statuses with it, as Salesforce does.
                cursor.execute(
                    f"""DELETE FROM {self.records_table} WHERE id = ANY(%s)
                        OR (sobject IN ('CampaignMember', 'CampaignMemberStatus') AND fields->>'CampaignId' = ANY(%s))
                        OR (sobject = 'CampaignMember' AND (fields->>'ContactId' = ANY(%s) OR fields->>'LeadId' = ANY(%s)))""",
                    (doomed, doomed, doomed, doomed),
                )
            for result in results:
                result.success = not result.errors
        return results

    # --- Bulk API 2.0 ingest -------------------------------------------------------------------------

    def create_job(self, request: dict[str, Any], version: str) -> dict[str, Any]:
        operation = request.get("operation")
        if operation not in ("insert", "update", "upsert", "delete"):
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        spec = object_spec(str(request.get("object") or ""))
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
            stamp = _now()
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
        info["systemModstamp"] = _now()
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
        spec = OBJECTS[info["object"]]
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
            written = self.write(
                spec.name,
                info["operation"],
                [dict(zip(header, data_rows[index], strict=True)) for index in well_formed],
                external_id_field=info.get("externalIdFieldName"),
                from_csv=True,
                lock_fault=lock_fault,
            )
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
            _copy_rows(
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
        writer = csv.writer(buffer, lineterminator="\n")
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

    # --- seeding marker ------------------------------------------------------------------------------

    def seed_summary(self, name: str) -> dict[str, Any] | None:
        with self.cursor() as cursor:
            cursor.execute(f'SELECT summary FROM "{self.schema}".seed_state WHERE name = %s', (name,))
            row = cursor.fetchone()
        return row[0] if row else None

    def seed_summary_in(self, cursor: Any, name: str) -> dict[str, Any] | None:
        cursor.execute(f'SELECT summary FROM "{self.schema}".seed_state WHERE name = %s', (name,))
        row = cursor.fetchone()
        return row[0] if row else None

    @contextmanager
    def seeding(self, name: str) -> Iterator[Any]:
        """A transaction holding the seed lock; yields the cursor."""
        with self.cursor() as cursor:
            self._lock(cursor, f"seed:{name}")
            yield cursor

    def save_seed_summary(self, cursor: Any, name: str, summary: dict[str, Any]) -> None:
        cursor.execute(
            f'INSERT INTO "{self.schema}".seed_state (name, summary) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING',
            (name, json.dumps(summary)),
        )

    def insert_in(self, cursor: Any, sobject: str, new_records: list[dict[str, Any]]) -> list[str]:
        """insert_raw inside a caller's transaction."""
        spec = OBJECTS[sobject]
        self._insert(cursor, spec, new_records)
        if sobject == "Campaign":
            self._create_default_statuses(cursor, [r["Id"] for r in new_records])
        return [r["Id"] for r in new_records]


def _age_seconds(stamp: str) -> float:
    return (dt.datetime.now(dt.UTC) - parse_datetime(stamp)).total_seconds()


def _id_number(record_id: str) -> int:
    """The counter inside an Id made by make_record_id (base 62, characters 6..14)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    number = 0
    for char in record_id[6:15]:
        number = number * 62 + alphabet.index(char)
    return number


class _RolledBack(Exception):
    """Raised inside a write transaction to undo it (all-or-none with a failed record)."""


def _roll_back(results: list[WriteResult]) -> None:
    for result in results:
        result.success = False
        result.created = False
        if not result.errors:
            result.id = None
            result.errors.append(
                SfError(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header",
                )
            )


class _RecordWriter:
    """One write request's validation and persistence, set-based over all its rows."""

    def __init__(
        self,
        store: SalesforceStore,
        cursor: Any,
        spec: ObjectSpec,
        operation: str,
        external_id_field: str | None,
        from_csv: bool,
        lock_fault: Callable[[], bool] | None,
    ) -> None:
        self.store = store
        self.cursor = cursor
        self.spec = spec
        self.operation = operation
        self.from_csv = from_csv
        self.lock_fault = lock_fault
        self.external: FieldSpec | None = None
        self.required = [f.name for f in spec.fields if f.required]
        self._field_cache: dict[str, FieldSpec | None] = {}
        if operation == "upsert":
            external = spec.field(external_id_field or "")
            if external is None or not (external.external_id or external.name == "Id"):
                raise RequestError(
                    404 if external is None else 400,
                    "NOT_FOUND" if external is None else "INVALID_FIELD",
                    f"Provided external ID field does not exist or is not accessible: {external_id_field}",
                )
            self.external = external
        elif operation not in ("insert", "update"):
            raise RequestError(400, "INVALID_OPERATION", f"Unsupported write operation {operation!r}")

    def _field(self, name: str) -> FieldSpec | None:
        if name not in self._field_cache:
            self._field_cache[name] = self.spec.field(name)
        return self._field_cache[name]

    def run(self, rows: Sequence[dict[str, Any]], all_or_none: bool) -> list[WriteResult]:
        results = [WriteResult() for _ in rows]
        values = [self._parse_row(row, result) for row, result in zip(rows, results, strict=True)]
        targets = self._resolve_targets(values, results)
        finals: list[dict[str, Any] | None] = [None] * len(rows)
        for index, (result, row_values, existing) in enumerate(zip(results, values, targets, strict=True)):
            if result.errors:
                continue
            finals[index] = self._merge(result, row_values, existing)
        self._inject_lock_errors(results, finals)
        self._check_references(results, values, finals)
        if self.spec.name == "CampaignMember":
            self._campaign_member_rules(results, finals, targets)
        elif self.spec.name == "CampaignMemberStatus":
            self._member_status_rules(results, finals, targets)
        self._check_external_ids(results, finals, targets)
        if all_or_none and any(r.errors for r in results):
            _roll_back(results)
            return results
        new_records = [
            f for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None and t is None
        ]
        changed = [
            f
            for r, f, t in zip(results, finals, targets, strict=True)
            if not r.errors and f is not None and t is not None
        ]
        self.store._insert(self.cursor, self.spec, new_records)
        self.store._update(self.cursor, self.spec, changed)
        for result, final, target in zip(results, finals, targets, strict=True):
            if not result.errors and final is not None:
                result.id = final["Id"]
                result.success = True
                result.created = target is None
        if self.spec.name == "Campaign" and new_records:
            self.store._create_default_statuses(self.cursor, [r["Id"] for r in new_records])
        if self.spec.name == "CampaignMemberStatus":
            self._single_default(
                [f for r, f in zip(results, finals, strict=True) if r.success and f and f.get("IsDefault")]
            )
        return results

    # -- per-row parsing --

    def _parse_row(self, row: dict[str, Any], result: WriteResult) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        if not isinstance(row, dict):
            result.errors.append(SfError("JSON_PARSER_ERROR", "each record must be a JSON object"))
            return parsed
        for key, raw in row.items():
            if key == "attributes" and not self.from_csv:
                continue
            field_spec = self._field(key)
            if field_spec is None:
                result.errors.append(
                    SfError("INVALID_FIELD", f"No such column '{key}' on sobject of type {self.spec.name}", (key,))
                )
                continue
            if self.from_csv:
                if raw == "":
                    continue  # Bulk 2.0: an empty cell leaves the field unchanged
                if raw == "#N/A":
                    raw = None
            if field_spec.name == "Id":
                parsed["Id"] = raw
                continue
            try:
                value = coerce_value(field_spec, raw, from_csv=self.from_csv)
                if field_spec.type == "reference" and isinstance(value, str):
                    # 15- and 18-character forms are the same Id; malformed ones fail in _check_references.
                    value = normalize_id(value) or value
                parsed[field_spec.name] = value
            except ValueTypeError:
                result.errors.append(
                    SfError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{field_spec.name}: value not of required type: {raw}",
                        (field_spec.name,),
                    )
                )
        return parsed

    def _id_error(self, raw: Any) -> SfError | None:
        normalized = normalize_id(raw) if isinstance(raw, str) else None
        if normalized is None or object_of_id(normalized) != self.spec.name:
            return SfError("MALFORMED_ID", f"{self.spec.name} ID: id value of incorrect type: {raw}", ("Id",))
        return None

    def _resolve_targets(self, values: list[dict[str, Any]], results: list[WriteResult]) -> list[dict[str, Any] | None]:
        """The existing record each row updates (None: it creates one), fetched in one query."""
        targets: list[dict[str, Any] | None] = [None] * len(values)
        wanted_ids: dict[int, str] = {}
        wanted_keys: dict[int, str] = {}
        seen_ids: set[str] = set()
        for index, (row_values, result) in enumerate(zip(values, results, strict=True)):
            if result.errors:
                continue
            by_id = self.operation == "update" or (self.external is not None and self.external.name == "Id")
            if self.operation == "insert":
                if "Id" in row_values:
                    result.errors.append(
                        SfError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ("Id",))
                    )
            elif by_id:
                raw = row_values.pop("Id", None)
                if raw in (None, ""):
                    if self.operation == "update":
                        result.errors.append(SfError("MISSING_ARGUMENT", "Id not specified in an update call", ("Id",)))
                    continue
                error = self._id_error(raw)
                record_id = normalize_id(raw) or ""
                if error:
                    result.errors.append(error)
                elif record_id in seen_ids:
                    result.errors.append(SfError("DUPLICATE_ID", f"duplicate id in list: {record_id}", ("Id",)))
                else:
                    wanted_ids[index] = record_id
                    seen_ids.add(record_id)
            else:
                assert self.external is not None
                row_values.pop("Id", None)
                key = row_values.get(self.external.name)
                if not isinstance(key, str) or not key:
                    result.errors.append(
                        SfError("MISSING_ARGUMENT", f"{self.external.name} not specified", (self.external.name,))
                    )
                else:
                    wanted_keys[index] = key.lower()
        duplicates = {k for k, n in _count(wanted_keys.values()).items() if n > 1}
        for index, key in list(wanted_keys.items()):
            if key in duplicates:
                results[index].errors.append(
                    SfError(
                        "DUPLICATE_VALUE",
                        f"Duplicate external id specified: {values[index].get(self.external.name) if self.external else key}",
                    )
                )
                del wanted_keys[index]
        found_by_id: dict[str, dict[str, Any]] = {}
        found_by_key: dict[str, dict[str, Any]] = {}
        table = self.store.records_table
        if wanted_ids:
            self.cursor.execute(
                f"SELECT id, fields FROM {table} WHERE id = ANY(%s) AND sobject = %s",
                (list(set(wanted_ids.values())), self.spec.name),
            )
            found_by_id = {r[0]: r[1] for r in self.cursor.fetchall()}
        if wanted_keys:
            self.cursor.execute(
                f"SELECT ext_key, fields FROM {table} WHERE sobject = %s AND ext_key = ANY(%s)",
                (self.spec.name, list(set(wanted_keys.values()))),
            )
            found_by_key = {r[0]: r[1] for r in self.cursor.fetchall()}
        for index, record_id in wanted_ids.items():
            if record_id in found_by_id:
                targets[index] = found_by_id[record_id]
            elif self.operation == "update" or self.external is not None:
                results[index].errors.append(
                    SfError(
                        "ENTITY_IS_DELETED" if self.operation == "update" else "NOT_FOUND",
                        "entity is deleted" if self.operation == "update" else f"Id not found: {record_id}",
                    )
                )
        for index, key in wanted_keys.items():
            targets[index] = found_by_key.get(key)
        return targets

    def _merge(
        self, result: WriteResult, row_values: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The record as it would be stored, or None with errors on the result."""
        refused: list[str] = []
        if existing is None:
            for name in row_values:
                field_spec = self._field(name)
                assert field_spec is not None
                if not field_spec.createable:
                    refused.append(name)
            final = {f.name: f.default for f in self.spec.fields if f.default is not None}
            final.update(row_values)
        else:
            for name, value in list(row_values.items()):
                field_spec = self._field(name)
                assert field_spec is not None
                if not field_spec.updateable:
                    # An upsert may repeat create-only values (its key, the member's Campaign) unchanged.
                    if self.operation == "upsert" and existing.get(name) == value:
                        del row_values[name]
                    else:
                        refused.append(name)
            final = dict(existing)
            final.update(row_values)
        if refused:
            result.errors.append(
                SfError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(refused)}. Please check the security settings of "
                    "this field and verify that it is read/write for your profile or permission set.",
                    tuple(refused),
                )
            )
            return None
        missing = [name for name in self.required if final.get(name) in (None, "")]
        if self.spec.name == "CampaignMember" and "CampaignId" in missing:
            # What Salesforce answers for a member without a Campaign.
            result.errors.append(SfError("MALFORMED_ID", "Invalid campaign id: null", ("CampaignId",)))
            return None
        if self.spec.name == "CampaignMember" and not (final.get("ContactId") or final.get("LeadId")):
            missing.append("ContactId or LeadId")
        if missing:
            result.errors.append(
                SfError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", tuple(missing)
                )
            )
            return None
        for name, value in row_values.items():
            field_spec = self._field(name)
            assert field_spec is not None
            if value is None or not field_spec.length or not isinstance(value, str):
                continue
            if field_spec.type == "email" and not _EMAIL_SHAPE.match(value):
                result.errors.append(
                    SfError("INVALID_EMAIL_ADDRESS", f"{field_spec.name}: invalid email address: {value}", (name,))
                )
                return None
            if value_length(field_spec, value) > field_spec.length:
                if field_spec.type == "base64":
                    result.errors.append(
                        SfError(
                            "MAXIMUM_SIZE_OF_ATTACHMENT", "Attachment body exceeds the maximum size of 25 MB", (name,)
                        )
                    )
                else:
                    shown = value if len(value) <= 60 else value[:57] + "..."
                    result.errors.append(
                        SfError(
                            "STRING_TOO_LONG",
                            f"{field_spec.name}: data value too large: {shown} (max length={field_spec.length})",
                            (name,),
                        )
                    )
                return None
        if self.spec.name == "Attachment" and "Body" in row_values:
            final["BodyLength"] = value_length(self.spec.field("Body"), final["Body"])  # type: ignore[arg-type]
        return final

    def _inject_lock_errors(self, results: list[WriteResult], finals: list[dict[str, Any] | None]) -> None:
        if self.lock_fault is None:
            return
        for result, final in zip(results, finals, strict=True):
            if not result.errors and final is not None and self.lock_fault():
                record = final.get("Id") or ""
                result.errors.append(
                    SfError(
                        "UNABLE_TO_LOCK_ROW",
                        f"unable to obtain exclusive access to this record or 1 records: {record}",
                    )
                )

    def _check_references(
        self, results: list[WriteResult], values: list[dict[str, Any]], finals: list[dict[str, Any] | None]
    ) -> None:
        reference_fields = [f for f in self.spec.fields if f.type == "reference"]
        to_check: set[str] = set()
        for result, row_values, final in zip(results, values, finals, strict=True):
            if result.errors or final is None:
                continue
            for field_spec in reference_fields:
                raw = row_values.get(field_spec.name)
                if raw is None:
                    continue
                normalized = normalize_id(raw)
                target_type = object_of_id(normalized) if normalized else None
                if normalized is None:
                    result.errors.append(
                        SfError(
                            "MALFORMED_ID", f"{field_spec.name}: id value of incorrect type: {raw}", (field_spec.name,)
                        )
                    )
                elif field_spec.reference_to and target_type not in field_spec.reference_to:
                    result.errors.append(
                        SfError(
                            "FIELD_INTEGRITY_EXCEPTION",
                            f"{field_spec.name}: id value of incorrect type: {raw}",
                            (field_spec.name,),
                        )
                    )
                else:
                    final[field_spec.name] = normalized
                    to_check.add(normalized)
        if not to_check:
            return
        self.cursor.execute(f"SELECT id FROM {self.store.records_table} WHERE id = ANY(%s)", (list(to_check),))
        present = {r[0] for r in self.cursor.fetchall()}
        for result, row_values, final in zip(results, values, finals, strict=True):
            if result.errors or final is None:
                continue
            absent = [
                f.name
                for f in reference_fields
                if row_values.get(f.name) is not None and final.get(f.name) not in present
            ]
            if absent:
                result.errors.append(
                    SfError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", tuple(absent))
                )

    def _statuses_for(self, campaign_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        self.cursor.execute(
            f"""SELECT fields FROM {self.store.records_table}
                WHERE sobject = 'CampaignMemberStatus' AND fields->>'CampaignId' = ANY(%s)""",
            (list(set(campaign_ids)),),
        )
        by_campaign: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (fields_,) in self.cursor.fetchall():
            by_campaign[fields_["CampaignId"]].append(fields_)
        return by_campaign

    def _campaign_member_rules(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        live = [(r, f, t) for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None]
        statuses = self._statuses_for(f["CampaignId"] for _, f, _ in live)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        new_keys: dict[str, WriteResult] = {}
        for result, final, target in live:
            if final.get("ContactId") and final.get("LeadId") and target is None:
                # Salesforce keeps only the Contact when a new member names both.
                final["LeadId"] = None
            labels = {s["Label"].lower(): s for s in statuses.get(final["CampaignId"], [])}
            status = final.get("Status")
            if status in (None, ""):
                default = next((s for s in labels.values() if s.get("IsDefault")), None)
                chosen = default
            else:
                chosen = labels.get(str(status).lower())
                if chosen is None:
                    result.errors.append(
                        SfError(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"Status: bad value for restricted picklist field: {status}",
                            ("Status",),
                        )
                    )
                    continue
            if chosen is not None:
                final["Status"] = chosen["Label"]
                final["HasResponded"] = bool(chosen.get("HasResponded"))
                if final["HasResponded"] and not final.get("FirstRespondedDate"):
                    final["FirstRespondedDate"] = today
            if target is None:
                _, member_key = SalesforceStore._keys(self.spec, final)
                assert member_key is not None
                if member_key in new_keys:
                    result.errors.append(SfError("DUPLICATE_VALUE", "Already a campaign member."))
                else:
                    new_keys[member_key] = result
        if new_keys:
            self.cursor.execute(
                f"SELECT member_key FROM {self.store.records_table} WHERE sobject = 'CampaignMember' AND member_key = ANY(%s)",
                (list(new_keys),),
            )
            for (member_key,) in self.cursor.fetchall():
                new_keys[member_key].errors.append(SfError("DUPLICATE_VALUE", "Already a campaign member."))

    def _member_status_rules(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        live = [(r, f, t) for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None]
        statuses = self._statuses_for(f["CampaignId"] for _, f, _ in live)
        for result, final, target in live:
            siblings = [s for s in statuses[final["CampaignId"]] if s["Id"] != final.get("Id")]
            label_clash = next((s for s in siblings if s["Label"].lower() == final["Label"].lower()), None)
            if label_clash is not None:
                result.errors.append(
                    SfError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: Label duplicates value on record with id: {label_clash.get('Id', '')}",
                        ("Label",),
                    )
                )
                continue
            if final.get("SortOrder") is None:
                final["SortOrder"] = max((int(s.get("SortOrder") or 0) for s in siblings), default=0) + 1
            order_clash = next((s for s in siblings if s.get("SortOrder") == final["SortOrder"]), None)
            if order_clash is not None:
                result.errors.append(
                    SfError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: SortOrder duplicates value on record with id: {order_clash.get('Id', '')}",
                        ("SortOrder",),
                    )
                )
                continue
            # Later rows of the same request see this one, so their defaults and checks stay right.
            statuses[final["CampaignId"]].append(
                final if target is not None else {**final, "Id": f"pending-{id(final)}"}
            )

    def _single_default(self, defaults: list[dict[str, Any]]) -> None:
        """Keep one default status per Campaign: the newest one set wins, as in Salesforce."""
        for final in defaults:
            self.cursor.execute(
                f"""UPDATE {self.store.records_table} SET fields = fields || '{{"IsDefault": false}}'::jsonb
                    WHERE sobject = 'CampaignMemberStatus' AND fields->>'CampaignId' = %s AND id <> %s
                    AND (fields->>'IsDefault')::boolean""",
                (final["CampaignId"], final["Id"]),
            )

    def _check_external_ids(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        external = self.spec.external_id_field
        if external is None:
            return
        claims: dict[str, list[tuple[WriteResult, dict[str, Any] | None]]] = defaultdict(list)
        for result, final, target in zip(results, finals, targets, strict=True):
            if result.errors or final is None:
                continue
            value = final.get(external.name)
            if not isinstance(value, str) or not value:
                continue
            if target is not None and str(target.get(external.name) or "").lower() == value.lower():
                continue
            claims[value.lower()].append((result, target))
        if not claims:
            return
        self.cursor.execute(
            f"SELECT ext_key, id FROM {self.store.records_table} WHERE sobject = %s AND ext_key = ANY(%s)",
            (self.spec.name, list(claims)),
        )
        holders = dict(self.cursor.fetchall())
        for key, claimants in claims.items():
            for position, (result, target) in enumerate(claimants):
                holder = holders.get(key)
                if (holder and (target is None or target.get("Id") != holder)) or position > 0:
                    result.errors.append(
                        SfError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {external.name} duplicates value on record with id: {holder or ''}",
                            (external.name,),
                        )
                    )


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return counts


__all__ = [
    "QUERY_PAGE_SIZE",
    "REFERENCE_TYPES",
    "TEXT_TYPES",
    "RequestError",
    "SalesforceStore",
    "SfError",
    "SoqlError",
    "WriteResult",
]
