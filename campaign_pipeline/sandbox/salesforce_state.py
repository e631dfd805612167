"""Sandbox org store plumbing: errors and results, the Postgres schema, sessions, API usage and plain reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from campaign_pipeline.sandbox.salesforce_objects import (
    OBJECTS,
    ORG_ID,
    PERSON_ACCOUNT_OBJECTS,
    ObjectSpec,
    format_datetime,
    make_record_id,
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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


def now_text() -> str:
    return format_datetime(dt.datetime.now(dt.UTC))


def _text_copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Load rows with one COPY (text format); values are str, None, or JSON-encoded otherwise."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_text_copy_value(v) for v in row))
        buffer.write("\n")
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


def record_keys(spec: ObjectSpec, fields: dict[str, Any]) -> tuple[str | None, str | None]:
    """The indexed external-Id key and the per-object uniqueness key of a record."""
    external = spec.external_id_field
    ext_value = fields.get(external.name) if external is not None else None
    ext_key = ext_value.lower() if isinstance(ext_value, str) and ext_value else None
    member_key = None
    if spec.name == "CampaignMember":
        member_key = f"{fields.get('CampaignId')}|{fields.get('ContactId') or fields.get('LeadId')}"
    elif spec.name == "CampaignMemberStatus":
        member_key = f"{fields.get('CampaignId')}|{str(fields.get('Label') or '').lower()}"
    elif spec.name == "ContentDocumentLink":
        member_key = f"{fields.get('ContentDocumentId')}|{fields.get('LinkedEntityId')}"
    return ext_key, member_key


def org_id_for(schema: str) -> str:
    """The Organization Id of the org kept in ``schema``: each sandbox org is its own org, as in Salesforce."""
    if schema == "sandbox_salesforce":
        return ORG_ID  # the default org keeps the Id it always had
    number = int(hashlib.sha1(schema.encode()).hexdigest()[:12], 16) % 62**9
    return make_record_id("00D", number)


class StoreBase:
    """The org's Postgres schema and connections; every public method is one transaction."""

    def __init__(self, engine: sa.Engine, schema: str, *, person_accounts: bool = False) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"sandbox schema name {schema!r} must be a lower-case SQL identifier")
        self.engine = engine
        self.schema = schema
        self.records_table = f'"{schema}".records'
        self.deleted_table = f'"{schema}".deleted_records'
        self.org_id = org_id_for(schema)
        # Person Accounts, once enabled, stay enabled (as in Salesforce): the org keeps the setting in Postgres,
        # so every instance on the schema serves the same describe; ensure_schema reads (and maybe sets) it.
        self.person_accounts = person_accounts
        self.objects: dict[str, ObjectSpec] = PERSON_ACCOUNT_OBJECTS if person_accounts else OBJECTS

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
                if self.person_accounts:
                    cursor.execute(
                        f"INSERT INTO {s}.org_settings (name, value) VALUES ('person_accounts', 'true') "
                        "ON CONFLICT (name) DO NOTHING"
                    )
                cursor.execute(f"SELECT value FROM {s}.org_settings WHERE name = 'person_accounts'")
                self.person_accounts = bool(cursor.fetchone())
                self.objects = PERSON_ACCOUNT_OBJECTS if self.person_accounts else OBJECTS
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
                -- Deleted records, as the recycle bin keeps them: queryAll still returns them, with IsDeleted.
                CREATE TABLE IF NOT EXISTS {s}.deleted_records (
                    id text PRIMARY KEY,
                    sobject text NOT NULL,
                    seq bigint NOT NULL,
                    fields jsonb NOT NULL,
                    ext_key text,
                    member_key text
                );
                ALTER TABLE {s}.query_cursors ADD COLUMN IF NOT EXISTS include_deleted boolean NOT NULL DEFAULT false;
                CREATE TABLE IF NOT EXISTS {s}.org_settings (name text PRIMARY KEY, value jsonb NOT NULL);
                CREATE TABLE IF NOT EXISTS {s}.bulk_query_jobs (id text PRIMARY KEY, info jsonb NOT NULL);
                CREATE TABLE IF NOT EXISTS {s}.bulk_query_rows (
                    job_id text NOT NULL, row_number integer NOT NULL, line text NOT NULL,
                    PRIMARY KEY (job_id, row_number)
                );
                """
        )

    def reset(self) -> None:
        """Delete all data (records, cursors, jobs, usage, seed marker); sessions stay valid."""
        s = f'"{self.schema}"'
        with self.cursor() as cursor:
            self._lock(cursor, "schema")
            cursor.execute(
                f"TRUNCATE {s}.records, {s}.query_cursors, {s}.bulk_jobs, {s}.bulk_job_data, "
                f"{s}.bulk_job_results, {s}.api_usage, {s}.seed_state, {s}.deleted_records, {s}.bulk_query_jobs, "
                f"{s}.bulk_query_rows"
            )

    # --- sessions and API usage -------------------------------------------------------------------

    def new_session(self) -> str:
        # A Salesforce access token starts with the Organization Id, which clients read as the org's identity.
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(40)}"
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
