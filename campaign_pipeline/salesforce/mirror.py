"""A local mirror of the Salesforce people matching needs (Contacts, Leads, Person Accounts), per org, in Postgres.

Person Accounts are mirrored through their person contacts: ``SELECT ... FROM Contact`` returns those too (with
``IsPersonAccount`` true and Email the account's PersonEmail), and the person contact's Id is the account's
PersonContactId, which is what CampaignMembers (ContactId) and Tasks (WhoId) of the person name. So a person
account is a Contact to matching. Of the Account only its Id is kept (the person contact's AccountId): the
person's own fields, such as the opt-out flag, are written on the Account, never on the read-only person contact.

Matching a campaign against Salesforce by querying each member's email costs reads in proportion to the campaign
(IN-lists of a few hundred addresses a call, for Contacts and again for Leads) on every run. The mirror costs
that once: the first refresh of an org fills it with one Bulk API 2.0 query job per object, and every later
refresh asks only for what changed since the newest ``SystemModstamp`` it holds, through ``queryAll`` so that
deleted records come back too (``IsDeleted``) and leave the mirror. Salesforce keeps deleted records in the
recycle bin for 15 days and some disappear at once (hard deletes, emptied bins), so a full refill runs when the
last one is older than ``full_refresh_after`` (7 days by default): nothing stale outlives a week.

``SystemModstamp`` moves on every change, including the system's own (Lead conversion, merges) that
``LastModifiedDate`` may miss, and a transaction can commit a stamp a little older than one already visible, so
each incremental query reaches back ``MODSTAMP_OVERLAP`` behind the newest stamp; rows are upserted by Id, so
re-reading them is harmless.

Rows are keyed by (org_id, Id): a mirror filled from one org is never used for another (``SalesforceClient.org_id``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from campaign_pipeline.salesforce.bulk_query import QueryJob, query_rows, start_query
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.storage.database import PIPELINE_SCHEMA, table_setup
from campaign_pipeline.storage.frames import TEXT_SPEC, UTC_INSTANT_SPEC, copy_stream, parse_csv

logger = logging.getLogger(__name__)

MIRROR_TABLE = "salesforce_people"
STATE_TABLE = "salesforce_people_refreshes"
MODSTAMP_OVERLAP = timedelta(minutes=5)
FULL_REFRESH_AFTER = timedelta(days=7)
MIRROR_COLUMNS: tuple[str, ...] = (
    "sobject",
    "id",
    "email",
    "is_converted",
    "created_date",
    "system_modstamp",
    "is_person_account",
    "account_id",
)
# The SOQL fields of each object beyond Id, CreatedDate and SystemModstamp.
_FIELDS: dict[str, list[str]] = {"Contact": ["Email"], "Lead": ["Email", "IsConverted"]}
# Only orgs with Person Accounts have Contact.IsPersonAccount; the mirror asks for it (and the person contact's
# AccountId, its person account) only there.
PERSON_ACCOUNT_FIELD = "IsPersonAccount"
_PERSON_ACCOUNT_FIELDS = [PERSON_ACCOUNT_FIELD, "AccountId"]


@dataclass
class MirrorRefresh:
    """What one refresh did, for asset metadata: how, how much, and what it cost in API calls."""

    org_id: str
    mode: str  # "full" or "incremental"
    rows: int  # people held for the org afterwards
    upserted: int  # rows read and written (an incremental refresh re-reads the few inside its overlap)
    deleted: int
    calls: int
    refreshed_at: pd.Timestamp
    last_full_refresh_at: pd.Timestamp
    objects: tuple[str, ...]
    person_accounts: bool = False  # the org has Person Accounts (its person contacts are among the Contacts)

    def metadata(self) -> dict[str, Any]:
        return {
            "mirror_rows": self.rows,
            "mirror_refresh": self.mode,
            "mirror_upserted": self.upserted,
            "mirror_deleted": self.deleted,
            "mirror_calls": self.calls,
            "mirror_refreshed_at": self.refreshed_at.isoformat(),
            "mirror_last_full_refresh_at": self.last_full_refresh_at.isoformat(),
        }


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A text column of a query answer; missing or empty means null."""
    if column not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype=object)
    values = frame[column].astype(object)
    return values.where(values.notna() & (values != ""), None)


def _instants(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def _soql_instant(moment: pd.Timestamp) -> str:
    return moment.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


# people_for's frame (matching's PEOPLE_COLUMNS) as COPY's text is parsed: text, nulls None, instants in UTC.
_PEOPLE_SPECS: dict[str, dict] = {
    "salesforce_id": TEXT_SPEC,
    "salesforce_object": TEXT_SPEC,
    "email": TEXT_SPEC,
    "created_date": UTC_INSTANT_SPEC,
    "person_account_id": TEXT_SPEC,
}


class PeopleMirror:
    """The mirror table and its refresh state; ``refresh(client)`` then ``people_for(org_id, emails)``."""

    def __init__(
        self,
        engine: sa.Engine,
        schema: str = PIPELINE_SCHEMA,
        *,
        full_refresh_after: timedelta = FULL_REFRESH_AFTER,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.full_refresh_after = full_refresh_after
        self.last_refresh: MirrorRefresh | None = None
        self._table = f'"{schema}"."{MIRROR_TABLE}"'
        self._state = f'"{schema}"."{STATE_TABLE}"'
        with table_setup(engine, schema, MIRROR_TABLE) as conn:
            conn.execute(
                sa.text(
                    f"""
                    CREATE TABLE IF NOT EXISTS {self._table} (
                        org_id text NOT NULL,
                        sobject text NOT NULL,
                        id text NOT NULL,
                        email text,
                        is_converted boolean NOT NULL DEFAULT false,
                        created_date timestamptz,
                        system_modstamp timestamptz,
                        is_person_account boolean NOT NULL DEFAULT false,
                        account_id text,
                        PRIMARY KEY (org_id, id)
                    );
                    -- Mirrors of before kept person accounts as Account rows (PersonEmail): now person contacts.
                    ALTER TABLE {self._table} ADD COLUMN IF NOT EXISTS is_person_account boolean NOT NULL DEFAULT false;
                    ALTER TABLE {self._table} DROP COLUMN IF EXISTS person_email;
                    CREATE INDEX IF NOT EXISTS {MIRROR_TABLE}_email ON {self._table} (org_id, email);
                    CREATE TABLE IF NOT EXISTS {self._state} (
                        org_id text NOT NULL,
                        sobject text NOT NULL,
                        high_water timestamptz,
                        last_full_refresh_at timestamptz NOT NULL,
                        last_refresh_at timestamptz NOT NULL,
                        PRIMARY KEY (org_id, sobject)
                    );
                    ALTER TABLE {self._state} ADD COLUMN IF NOT EXISTS person_accounts boolean NOT NULL DEFAULT false;
                    -- Mirrors of before held no person account Ids: their Contacts are refilled on the next refresh.
                    DO $$ BEGIN
                        IF NOT EXISTS (
                            SELECT 1 FROM information_schema.columns
                            WHERE table_schema = '{schema}' AND table_name = '{MIRROR_TABLE}'
                              AND column_name = 'account_id'
                        ) THEN
                            ALTER TABLE {self._table} ADD COLUMN account_id text;
                            UPDATE {self._state} SET last_full_refresh_at = 'epoch'
                            WHERE sobject = 'Contact' AND person_accounts;
                        END IF;
                    END $$;
                    """
                )
            )

    # -- refreshing ----------------------------------------------------------------------------------------------
    def refresh(self, client: SalesforceClient, *, now: pd.Timestamp | None = None) -> MirrorRefresh:
        """Bring the org's rows up to date: a full fill when due (or never done), otherwise what changed."""
        org_id = client.org_id
        calls_before = client.stats.total
        now = now or pd.Timestamp.now(tz="UTC")
        with self._org_lock(org_id):
            state = self._load_state(org_id)
            objects = list(_FIELDS)
            due = [
                sobject
                for sobject in objects
                if sobject not in state or now - state[sobject]["last_full_refresh_at"] >= self.full_refresh_after
            ]
            # Asked again with each full fill of Contacts: an org can enable Person Accounts (never disable them).
            person_accounts = (
                self._has_person_accounts(client) if "Contact" in due else bool(state["Contact"]["person_accounts"])
            )
            upserted = deleted = 0
            # Every full fill's job is started before any is waited on: they run side by side in the org.
            jobs = {sobject: start_query(client, self._full_soql(sobject, person_accounts)) for sobject in due}
            for sobject in objects:
                if sobject in due:
                    upserted += self._full(client, org_id, sobject, jobs[sobject], now, person_accounts)
                else:
                    written, removed = self._incremental(client, org_id, sobject, state[sobject], now, person_accounts)
                    upserted, deleted = upserted + written, deleted + removed
            state = self._load_state(org_id)
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text(f"SELECT count(*) FROM {self._table} WHERE org_id = :o AND sobject = ANY(:objects)"),
                    {"o": org_id, "objects": objects},
                ).scalar_one()
        refresh = MirrorRefresh(
            org_id=org_id,
            mode="full" if due else "incremental",
            rows=int(rows),
            upserted=upserted,
            deleted=deleted,
            calls=client.stats.total - calls_before,
            refreshed_at=now,
            last_full_refresh_at=min(state[sobject]["last_full_refresh_at"] for sobject in objects),
            objects=tuple(objects),
            person_accounts=person_accounts,
        )
        self.last_refresh = refresh
        logger.info(
            "Salesforce people mirror (%s refresh): %s rows, %s upserted, %s deleted, %s API calls",
            refresh.mode,
            refresh.rows,
            refresh.upserted,
            refresh.deleted,
            refresh.calls,
        )
        return refresh

    @staticmethod
    def _has_person_accounts(client: SalesforceClient) -> bool:
        return any(entry["name"] == PERSON_ACCOUNT_FIELD for entry in client.describe("Contact")["fields"])

    @staticmethod
    def _select(sobject: str, person_accounts: bool, *, with_deleted: bool) -> str:
        extra = _PERSON_ACCOUNT_FIELDS if person_accounts and sobject == "Contact" else []
        fields = ["Id", *_FIELDS[sobject], *extra, "CreatedDate", "SystemModstamp"]
        return f"SELECT {', '.join(fields + (['IsDeleted'] if with_deleted else []))} FROM {sobject}"

    def _full_soql(self, sobject: str, person_accounts: bool) -> str:
        return self._select(sobject, person_accounts, with_deleted=False)

    def _full(
        self,
        client: SalesforceClient,
        org_id: str,
        sobject: str,
        job: QueryJob,
        now: pd.Timestamp,
        person_accounts: bool,
    ) -> int:
        filled = 0
        newest: pd.Timestamp | None = None
        with self._raw() as (raw, cur):
            # Each results page is staged as it arrives: an org of millions is never one frame in memory.
            for page in query_rows(client, job):
                rows = self._rows(sobject, page)
                self._stage(cur, rows)
                filled += len(rows)
                page_newest = rows["system_modstamp"].max()
                if not pd.isna(page_newest) and (newest is None or page_newest > newest):
                    newest = page_newest
            # One transaction: a concurrent matcher sees the old rows or the new ones, never a half-filled mirror.
            cur.execute(f"DELETE FROM {self._table} WHERE org_id = %s AND sobject = %s", (org_id, sobject))
            cur.execute(
                f"INSERT INTO {self._table} (org_id, {', '.join(MIRROR_COLUMNS)}) "
                f"SELECT %s, {', '.join(MIRROR_COLUMNS)} FROM mirror_stage",
                (org_id,),
            )
            self._save_state(cur, org_id, sobject, newest, now, full=True, person_accounts=person_accounts)
            raw.commit()
        return filled

    def _incremental(
        self,
        client: SalesforceClient,
        org_id: str,
        sobject: str,
        state: dict[str, Any],
        now: pd.Timestamp,
        person_accounts: bool,
    ) -> tuple[int, int]:
        soql = self._select(sobject, person_accounts, with_deleted=True)
        if state["high_water"] is not None and not pd.isna(state["high_water"]):
            soql += f" WHERE SystemModstamp > {_soql_instant(state['high_water'] - MODSTAMP_OVERLAP)}"
        answer = pd.DataFrame(client.query_all(soql, include_deleted=True))
        rows = self._rows(sobject, answer)
        deleted = (
            _text(answer, "IsDeleted").astype(str).str.lower().eq("true") if len(answer) else pd.Series(dtype=bool)
        )
        gone, kept = rows[deleted.to_numpy(dtype=bool)], rows[~deleted.to_numpy(dtype=bool)]
        with self._raw() as (raw, cur):
            if len(gone):
                cur.execute(
                    f"DELETE FROM {self._table} WHERE org_id = %s AND id = ANY(%s)", (org_id, gone["id"].tolist())
                )
            if len(kept):
                self._stage(cur, kept)
                updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in MIRROR_COLUMNS if column != "id")
                cur.execute(
                    f"INSERT INTO {self._table} (org_id, {', '.join(MIRROR_COLUMNS)}) "
                    f"SELECT %s, {', '.join(MIRROR_COLUMNS)} FROM mirror_stage "
                    f"ON CONFLICT (org_id, id) DO UPDATE SET {updates}",
                    (org_id,),
                )
            newest = rows["system_modstamp"].max() if len(rows) else None
            self._save_state(
                cur,
                org_id,
                sobject,
                newest,
                now,
                full=False,
                previous=state["high_water"],
                person_accounts=person_accounts,
            )
            raw.commit()
        return len(kept), len(gone)

    @staticmethod
    def _rows(sobject: str, answer: pd.DataFrame) -> pd.DataFrame:
        """Mirror rows from a query answer (Bulk CSV text or REST JSON values): Email lowercased and trimmed."""
        email = _text(answer, "Email")
        converted = _text(answer, "IsConverted")
        person = _text(answer, PERSON_ACCOUNT_FIELD)
        is_person = person.astype(str).str.lower().eq("true") if len(answer) else pd.Series(dtype=bool)
        return pd.DataFrame(
            {
                "sobject": sobject,
                "id": _text(answer, "Id"),
                "email": email.where(email.isna(), email.astype(str).str.strip().str.lower()),
                "is_converted": converted.astype(str).str.lower().eq("true") if len(answer) else [],
                "created_date": _instants(_text(answer, "CreatedDate")),
                "system_modstamp": _instants(_text(answer, "SystemModstamp")),
                "is_person_account": is_person if len(answer) else [],
                # Kept for person contacts only: a business contact's Account is no person's record.
                "account_id": _text(answer, "AccountId").where(is_person, None) if len(answer) else [],
            },
            index=answer.index,
        )[list(MIRROR_COLUMNS)]

    @staticmethod
    def _stage(cur: Any, rows: pd.DataFrame) -> None:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS mirror_stage (sobject text, id text, email text, is_converted boolean, "
            "created_date timestamptz, system_modstamp timestamptz, is_person_account boolean, account_id text) "
            "ON COMMIT DELETE ROWS"
        )
        cur.copy_expert(
            f"COPY mirror_stage ({', '.join(MIRROR_COLUMNS)}) FROM STDIN WITH (FORMAT csv)",
            copy_stream(rows[list(MIRROR_COLUMNS)]),
            size=1 << 20,
        )

    def _save_state(
        self,
        cur: Any,
        org_id: str,
        sobject: str,
        newest: pd.Timestamp | None,
        now: pd.Timestamp,
        *,
        full: bool,
        previous: pd.Timestamp | None = None,
        person_accounts: bool = False,
    ) -> None:
        candidates = [value for value in (newest, previous) if value is not None and not pd.isna(value)]
        high_water = max(candidates) if candidates else None
        cur.execute(
            f"""
            INSERT INTO {self._state} (org_id, sobject, high_water, last_full_refresh_at, last_refresh_at,
                                       person_accounts)
            VALUES (%(org)s, %(sobject)s, %(hw)s, %(now)s, %(now)s, %(person_accounts)s)
            ON CONFLICT (org_id, sobject) DO UPDATE SET
                high_water = EXCLUDED.high_water,
                person_accounts = EXCLUDED.person_accounts,
                last_refresh_at = EXCLUDED.last_refresh_at,
                last_full_refresh_at = CASE WHEN %(full)s THEN EXCLUDED.last_full_refresh_at
                                            ELSE {self._state}.last_full_refresh_at END
            """,
            {
                "org": org_id,
                "sobject": sobject,
                "hw": None if high_water is None else high_water.to_pydatetime(),
                "now": now.to_pydatetime(),
                "full": full,
                "person_accounts": person_accounts,
            },
        )

    def _load_state(self, org_id: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(
                sa.text(
                    "SELECT sobject, high_water, last_full_refresh_at, last_refresh_at, person_accounts "
                    f"FROM {self._state} "
                    "WHERE org_id = :o"
                ),
                {"o": org_id},
            )
            return {
                row.sobject: {
                    "high_water": None if row.high_water is None else pd.Timestamp(row.high_water).tz_convert("UTC"),
                    "last_full_refresh_at": pd.Timestamp(row.last_full_refresh_at).tz_convert("UTC"),
                    "last_refresh_at": pd.Timestamp(row.last_refresh_at).tz_convert("UTC"),
                    "person_accounts": row.person_accounts,
                }
                for row in result
            }

    @contextmanager
    def _org_lock(self, org_id: str) -> Iterator[None]:
        """One refresh per org at a time across processes; a second waits, then finds little left to do."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"mirror:{org_id}"})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"mirror:{org_id}"})
                conn.commit()

    @contextmanager
    def _raw(self) -> Iterator[tuple[Any, Any]]:
        raw = self.engine.raw_connection()
        try:
            with closing(raw.cursor()) as cur:
                yield raw, cur
        finally:
            raw.close()

    # -- reading ---------------------------------------------------------------------------------------------------
    def person_accounts_among(self, org_id: str, ids: Iterable[str]) -> int:
        """How many of ``ids`` are person contacts (the people of Person Accounts) in the org's mirror."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM {self._table} "
                        "WHERE org_id = :o AND id = ANY(:ids) AND sobject = 'Contact' AND is_person_account"
                    ),
                    {"o": org_id, "ids": list(dict.fromkeys(ids))},
                ).scalar_one()
            )

    def people_for(
        self, org_id: str, emails: Iterable[str], objects: tuple[str, ...] = ("Contact", "Lead")
    ) -> pd.DataFrame:
        """Mirrored people of ``objects`` whose email is one of ``emails`` (any case), as matching's people frame.

        Converted Leads are left out: they live on as Contacts, and matching them would double-count the person.
        ``person_account_id`` is the person account of a person contact (null for everyone else).
        """
        wanted = pd.Series(list(emails), dtype=object)
        wanted = wanted[wanted.map(lambda value: isinstance(value, str))].str.strip().str.lower()
        wanted = wanted[wanted != ""].drop_duplicates()
        with self._raw() as (raw, cur):
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS mirror_wanted (email text) ON COMMIT DELETE ROWS")
            cur.copy_expert(
                "COPY mirror_wanted (email) FROM STDIN WITH (FORMAT csv)",
                copy_stream(wanted.to_frame("email")),
                size=1 << 20,
            )
            select = cur.mogrify(
                f"""
                SELECT p.id, p.sobject, p.email, p.created_date, p.account_id
                FROM {self._table} p JOIN (SELECT DISTINCT email FROM mirror_wanted) w ON w.email = p.email
                WHERE p.org_id = %s AND p.sobject = ANY(%s) AND NOT (p.sobject = 'Lead' AND p.is_converted)
                """,
                (org_id, list(objects)),
            ).decode()
            # COPY out as CSV: hundreds of thousands of people without a Python tuple per row.
            found = io.BytesIO()
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)", found, size=1 << 20)
            raw.commit()
        return parse_csv(found.getbuffer(), _PEOPLE_SPECS)
