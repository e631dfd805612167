"""Postgres landing of Mailchimp events: kept forever, keyed by event identity, with per-campaign fetch cursors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from campaign_pipeline.core.campaign_types import is_automation_type
from campaign_pipeline.core.events import (
    CAMPAIGN_RECIPIENT_COLUMNS,
    RAW_EMAIL_EVENT_COLUMNS,
    empty_raw_email_events,
    iso_utc_strings,
    merged_pages,
    parse_campaign_report,
    parse_email_activity,
    parse_sent_to,
    parse_unsubscribes,
)
from campaign_pipeline.core.schemas import RawEmailEvents
from campaign_pipeline.storage.database import PIPELINE_SCHEMA, get_engine, table_setup
from campaign_pipeline.storage.frames import UTC_INSTANT_SPEC, copy_stream, query_frame

if TYPE_CHECKING:
    from campaign_pipeline.mailchimp.resource import MailchimpCallStats, MailchimpResource

LANDED_EVENTS_TABLE = "landed_email_events"
CURSORS_TABLE = "mailchimp_fetch_cursors"
QUARANTINE_TABLE = "quarantined_records"
RECIPIENTS_TABLE = "landed_recipients"
SENDS_TABLE = "landed_campaign_sends"
RECIPIENT_COLUMNS = ["campaign_id", "email_id", "email_address", "send_status"]

_DDL = f"""
CREATE TABLE IF NOT EXISTS "{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} (
    event_id      text PRIMARY KEY,
    campaign_id   text NOT NULL,
    email_id      text NOT NULL,
    email_address text NOT NULL,
    action        text NOT NULL,
    "timestamp"   timestamptz NOT NULL,
    url           text,
    bounce_type   text,
    occurrence    integer NOT NULL DEFAULT 0,
    landed_at     timestamptz NOT NULL DEFAULT now()
);
-- Tables landed before same-second repeats were counted: their events are all occurrence 0.
ALTER TABLE "{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} ADD COLUMN IF NOT EXISTS occurrence integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {LANDED_EVENTS_TABLE}_campaign_idx
    ON "{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} (campaign_id);
CREATE TABLE IF NOT EXISTS "{PIPELINE_SCHEMA}".{CURSORS_TABLE} (
    campaign_id     text PRIMARY KEY,
    fetched_through timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS "{PIPELINE_SCHEMA}".{QUARANTINE_TABLE} (
    record_key  text PRIMARY KEY,
    campaign_id text NOT NULL,
    source      text NOT NULL,
    record      jsonb NOT NULL,
    reason      text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS "{PIPELINE_SCHEMA}".{RECIPIENTS_TABLE} (
    campaign_id   text NOT NULL,
    email_id      text NOT NULL,
    email_address text NOT NULL,
    send_status   text NOT NULL,
    landed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, email_id)
);
CREATE TABLE IF NOT EXISTS "{PIPELINE_SCHEMA}".{SENDS_TABLE} (
    campaign_id      text PRIMARY KEY,
    send_time        timestamptz,
    sent_at_is_exact boolean NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {QUARANTINE_TABLE}_campaign_idx
    ON "{PIPELINE_SCHEMA}".{QUARANTINE_TABLE} (campaign_id);
"""

_EVENT_COLUMNS_SQL = ", ".join(f'"{column}"' for column in RAW_EMAIL_EVENT_COLUMNS)


@dataclass(frozen=True)
class LandingResult:
    new_events: int
    total_events: int
    cursor: pd.Timestamp | None
    new_quarantined: int
    total_quarantined: int


_TEXT: dict = {"dtype": "object"}
_EVENT_SPECS: dict[str, dict] = {
    **{c: _TEXT for c in RAW_EMAIL_EVENT_COLUMNS},
    "timestamp": UTC_INSTANT_SPEC,
    "occurrence": {"dtype": "int64", "multiline": False},
}
_RECIPIENT_SPECS: dict[str, dict] = {
    **{c: _TEXT for c in CAMPAIGN_RECIPIENT_COLUMNS},
    "sent_at": UTC_INSTANT_SPEC,
    "sent_at_is_exact": {"dtype": "bool", "multiline": False},
}


def _checked_columns(columns: Sequence[str] | None, allowed: list[str], table: str) -> list[str]:
    if columns is None:
        return list(allowed)
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise ValueError(f"{PIPELINE_SCHEMA}.{table} has no column(s) {unknown}; it has {allowed}")
    return list(columns)


def _campaign_filter(campaign_ids: Sequence[str] | None) -> tuple:
    """Parameters of `%s IS NULL OR campaign_id = ANY(%s)`: these campaigns, or every campaign for None."""
    ids = None if campaign_ids is None else list(campaign_ids)
    return (None if ids is None else True, ids if ids is not None else [])


def _limit(rows: int | None) -> str:
    return "" if rows is None else f" LIMIT {int(rows)}"


class LandingStore:
    """The landed_email_events, mailchimp_fetch_cursors and quarantined_records tables."""

    def __init__(self, engine: sa.Engine | None = None):
        self.engine = engine if engine is not None else get_engine()
        self._ensure_tables()

    def _ensure_tables(self) -> None:
        with table_setup(self.engine, PIPELINE_SCHEMA, LANDED_EVENTS_TABLE) as conn:
            conn.exec_driver_sql(_DDL)

    # ------------------------------------------------------------------ cursors

    def cursor(self, campaign_id: str) -> pd.Timestamp | None:
        """The instant up to which this campaign's email activity has been fetched, or None (never)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.text(f'SELECT fetched_through FROM "{PIPELINE_SCHEMA}".{CURSORS_TABLE} WHERE campaign_id = :c'),
                {"c": campaign_id},
            ).scalar_one_or_none()
        return None if value is None else pd.Timestamp(value).tz_convert("UTC")

    # ------------------------------------------------------------------ landing

    def land(
        self,
        campaign_id: str,
        events: pd.DataFrame,
        quarantined: pd.DataFrame,
        fetched_through: pd.Timestamp | None,
    ) -> LandingResult:
        """Insert new events (existing event_ids untouched), quarantine records, advance the cursor — one transaction.

        The cursor only moves forward, so a fetch that saw nothing new never rewinds it.
        """
        raw = self.engine.raw_connection()
        try:
            with closing(raw.cursor()) as cur:
                new_events = self._copy_events(cur, events)
                new_quarantined = self._insert_quarantine(cur, quarantined)
                if fetched_through is not None:
                    cur.execute(
                        f'INSERT INTO "{PIPELINE_SCHEMA}".{CURSORS_TABLE} (campaign_id, fetched_through, updated_at) '
                        "VALUES (%s, %s, now()) ON CONFLICT (campaign_id) DO UPDATE SET "
                        f"fetched_through = GREATEST({CURSORS_TABLE}.fetched_through, EXCLUDED.fetched_through), "
                        "updated_at = now()",
                        (campaign_id, fetched_through.to_pydatetime()),
                    )
                cur.execute(
                    f'SELECT (SELECT count(*) FROM "{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} WHERE campaign_id = %s), '
                    f'(SELECT count(*) FROM "{PIPELINE_SCHEMA}".{QUARANTINE_TABLE} WHERE campaign_id = %s), '
                    f'(SELECT fetched_through FROM "{PIPELINE_SCHEMA}".{CURSORS_TABLE} WHERE campaign_id = %s)',
                    (campaign_id, campaign_id, campaign_id),
                )
                total_events, total_quarantined, fetched_through_now = cur.fetchone() or (0, 0, None)
            raw.commit()
        except Exception:
            raw.rollback()
            raise
        finally:
            raw.close()
        cursor = None if fetched_through_now is None else pd.Timestamp(fetched_through_now).tz_convert("UTC")
        return LandingResult(new_events, int(total_events), cursor, new_quarantined, int(total_quarantined))

    def _copy_events(self, cur, events: pd.DataFrame) -> int:
        if events.empty:
            return 0
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS incoming_email_events (LIKE "{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} '
            "INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        outgoing = events.reindex(columns=RAW_EMAIL_EVENT_COLUMNS).copy()
        outgoing["occurrence"] = outgoing["occurrence"].fillna(0).astype("int64")
        outgoing["timestamp"] = iso_utc_strings(outgoing["timestamp"])
        cur.copy_expert(
            f"COPY incoming_email_events ({_EVENT_COLUMNS_SQL}) FROM STDIN WITH (FORMAT csv)",
            copy_stream(outgoing),
        )
        cur.execute(
            f'INSERT INTO "{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} ({_EVENT_COLUMNS_SQL}) '
            f"SELECT DISTINCT ON (event_id) {_EVENT_COLUMNS_SQL} FROM incoming_email_events "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        return cur.rowcount

    def _insert_quarantine(self, cur, quarantined: pd.DataFrame) -> int:
        if quarantined.empty:
            return 0
        keys = [
            hashlib.sha1(f"{campaign}|{source}|{record}|{reason}".encode()).hexdigest()
            for campaign, source, record, reason in zip(
                quarantined["campaign_id"],
                quarantined["source"],
                quarantined["record"],
                quarantined["reason"],
                strict=True,
            )
        ]
        rows = list(
            zip(
                keys,
                quarantined["campaign_id"],
                quarantined["source"],
                quarantined["record"],
                quarantined["reason"],
                strict=True,
            )
        )
        from psycopg2.extras import execute_values

        # The same bad record comes back on every re-fetch; it is quarantined once, first seen_at kept.
        inserted = execute_values(
            cur,
            f'INSERT INTO "{PIPELINE_SCHEMA}".{QUARANTINE_TABLE} (record_key, campaign_id, source, record, reason) '
            "VALUES %s ON CONFLICT (record_key) DO NOTHING RETURNING record_key",
            rows,
            template="(%s, %s, %s, %s::jsonb, %s)",
            page_size=1000,
            fetch=True,
        )
        return len(inserted)

    # ------------------------------------------------------------------ reading

    def raw_email_events(
        self, campaign_ids: Sequence[str] | None, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """The landed events of these campaigns as a raw_email_events frame: only these rows, only `columns`.

        The landing table is the asset's storage: nothing is copied into another table on the way.
        """
        wanted = _checked_columns(columns, RAW_EMAIL_EVENT_COLUMNS, LANDED_EVENTS_TABLE)
        frame = query_frame(
            self.engine,
            f"SELECT {', '.join(chr(34) + c + chr(34) for c in wanted)} FROM "
            f'"{PIPELINE_SCHEMA}".{LANDED_EVENTS_TABLE} WHERE %s IS NULL OR campaign_id = ANY(%s) '
            'ORDER BY campaign_id, "timestamp", event_id' + _limit(limit),
            _campaign_filter(campaign_ids),
            {c: _EVENT_SPECS[c] for c in wanted},
        )
        for column in ("url", "bounce_type"):
            if column in frame:
                frame[column] = frame[column].where(frame[column].notna(), pd.NA)
        return frame

    def events(self, campaign_id: str) -> pd.DataFrame:
        """Every landed event of the campaign as a raw_email_events frame."""
        return self.raw_email_events([campaign_id])

    def campaign_recipients(
        self, campaign_ids: Sequence[str] | None, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """The landed sent-to rows of these campaigns as a campaign_recipients frame: only these rows, only `columns`.

        sent_at and sent_at_is_exact are stored once per campaign (landed_campaign_sends), not on every row.
        """
        wanted = _checked_columns(columns, CAMPAIGN_RECIPIENT_COLUMNS, RECIPIENTS_TABLE)
        select = {
            "sent_at": "s.send_time",
            "sent_at_is_exact": "coalesce(s.sent_at_is_exact, true)",
        }
        expressions = ", ".join(f"{select.get(c, 'r.' + c)} AS {c}" for c in wanted)
        return query_frame(
            self.engine,
            f'SELECT {expressions} FROM "{PIPELINE_SCHEMA}".{RECIPIENTS_TABLE} r '
            f'LEFT JOIN "{PIPELINE_SCHEMA}".{SENDS_TABLE} s USING (campaign_id) '
            "WHERE %s IS NULL OR r.campaign_id = ANY(%s) ORDER BY r.campaign_id, r.email_id" + _limit(limit),
            _campaign_filter(campaign_ids),
            {c: _RECIPIENT_SPECS[c] for c in wanted},
        )

    def land_send(self, campaign_id: str, send_time: pd.Timestamp | None, sent_at_is_exact: bool) -> None:
        """The campaign's send time and whether it is exact per recipient (false for automation emails)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f'INSERT INTO "{PIPELINE_SCHEMA}".{SENDS_TABLE} (campaign_id, send_time, sent_at_is_exact) '
                    "VALUES (:c, :t, :e) ON CONFLICT (campaign_id) DO UPDATE SET send_time = EXCLUDED.send_time, "
                    "sent_at_is_exact = EXCLUDED.sent_at_is_exact, updated_at = now()"
                ),
                {
                    "c": campaign_id,
                    "t": None if send_time is None else send_time.to_pydatetime(),
                    "e": sent_at_is_exact,
                },
            )

    def recipient_count(self, campaign_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(f'SELECT count(*) FROM "{PIPELINE_SCHEMA}".{RECIPIENTS_TABLE} WHERE campaign_id = :c'),
                    {"c": campaign_id},
                ).scalar_one()
            )

    def preview(self, table: str, campaign_ids: Sequence[str], rows: int = 10) -> pd.DataFrame:
        """The first landed rows of these campaigns (for the asset's preview in the UI)."""
        if table == LANDED_EVENTS_TABLE:
            frame = self.raw_email_events(
                campaign_ids, ["campaign_id", "email_address", "action", "timestamp", "url"], rows
            )
        elif table == RECIPIENTS_TABLE:
            frame = self.campaign_recipients(
                campaign_ids, ["campaign_id", "email_address", "send_status", "sent_at"], rows
            )
        else:
            raise ValueError(f"no preview of {table}")
        return frame

    def value_counts(self, table: str, column: str, campaign_ids: Sequence[str]) -> dict[str, int]:
        """How many landed rows of these campaigns hold each value of `column` (for asset metadata)."""
        if table not in (LANDED_EVENTS_TABLE, RECIPIENTS_TABLE) or column not in ("action", "send_status"):
            raise ValueError(f"no summary of {table}.{column}")
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    f'SELECT {column}, count(*) FROM "{PIPELINE_SCHEMA}".{table} WHERE campaign_id = ANY(:c) '
                    f"GROUP BY {column} ORDER BY count(*) DESC, {column}"
                ),
                {"c": list(campaign_ids)},
            )
            return {str(value): int(count) for value, count in rows}

    def land_recipients(self, campaign_id: str, recipients: pd.DataFrame) -> int:
        """Upsert sent-to rows (a later sent-to may turn `sent` into a bounce); rows are never deleted.

        Returns how many members were not landed before.
        """
        if recipients.empty:
            return 0
        raw = self.engine.raw_connection()
        try:
            with closing(raw.cursor()) as cur:
                cur.execute(
                    f'CREATE TEMP TABLE IF NOT EXISTS incoming_recipients (LIKE "{PIPELINE_SCHEMA}".{RECIPIENTS_TABLE} '
                    "INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                columns = ", ".join(RECIPIENT_COLUMNS)
                cur.copy_expert(
                    f"COPY incoming_recipients ({columns}) FROM STDIN WITH (FORMAT csv)",
                    copy_stream(recipients[RECIPIENT_COLUMNS]),
                )
                cur.execute(
                    f'INSERT INTO "{PIPELINE_SCHEMA}".{RECIPIENTS_TABLE} AS landed ({columns}) '
                    f"SELECT DISTINCT ON (campaign_id, email_id) {columns} FROM incoming_recipients "
                    "ON CONFLICT (campaign_id, email_id) DO UPDATE SET send_status = EXCLUDED.send_status "
                    "WHERE landed.send_status IS DISTINCT FROM EXCLUDED.send_status "
                    "RETURNING (xmax = 0) AS inserted"
                )
                new_members = sum(1 for (inserted,) in cur.fetchall() if inserted)
            raw.commit()
        except Exception:
            raw.rollback()
            raise
        finally:
            raw.close()
        return new_members

    def recipients(self, campaign_id: str) -> pd.DataFrame:
        """Every landed sent-to row of the campaign (campaign_id, email_id, email_address, send_status)."""
        return self.campaign_recipients([campaign_id], RECIPIENT_COLUMNS)

    def quarantined(self, campaign_id: str | None = None) -> pd.DataFrame:
        """Quarantined records (all campaigns, or one), newest first."""
        where = "WHERE campaign_id = :c" if campaign_id is not None else ""
        with self.engine.connect() as conn:
            return pd.read_sql(
                sa.text(
                    f'SELECT campaign_id, source, record::text AS record, reason, seen_at FROM "{PIPELINE_SCHEMA}".'
                    f"{QUARANTINE_TABLE} {where} ORDER BY seen_at DESC, record_key"
                ),
                conn,
                params={"c": campaign_id} if campaign_id is not None else {},
            )


@dataclass(frozen=True)
class EventSync:
    """What one incremental fetch of a campaign's events did."""

    campaign_id: str
    since: pd.Timestamp | None
    fetched_events: int
    landing: LandingResult
    calls: MailchimpCallStats


def fetch_and_land_events(mailchimp: MailchimpResource, store: LandingStore, campaign_id: str) -> EventSync:
    """Fetch email activity after (cursor - overlap) and all unsubscribes, land what is new, advance the cursor.

    The overlap re-reads a little activity Mailchimp may have recorded late with an earlier
    timestamp; landing by event_id makes the re-read free of duplicates. The cursor is the latest
    activity instant seen (Mailchimp's clock, not ours), so clock skew cannot open a gap.
    """
    before = mailchimp.stats.snapshot()
    cursor = store.cursor(campaign_id)
    since = None if cursor is None else cursor - pd.Timedelta(minutes=mailchimp.overlap_minutes)
    # Parsed page by page as the pages arrive: the run never holds the whole listing as JSON objects.
    activity = merged_pages(
        mailchimp.fetch_email_activity_pages(campaign_id, partial(parse_email_activity, campaign_id), since=since),
        "events",
    )
    # /unsubscribed has no `since` filter; it is small (a fraction of a percent of recipients).
    unsubscribes = parse_unsubscribes(campaign_id, mailchimp.fetch_unsubscribes(campaign_id))
    events = pd.concat([activity.frame, unsubscribes.frame], ignore_index=True)
    quarantined = pd.concat([activity.quarantined, unsubscribes.quarantined], ignore_index=True)
    fetched_through = activity.frame["timestamp"].max() if not activity.frame.empty else None
    # Checked once where events enter: the landing table is raw_email_events' storage, read as it was landed.
    RawEmailEvents.validate(events)
    landing = store.land(campaign_id, events, quarantined, fetched_through)
    return EventSync(
        campaign_id=campaign_id,
        since=since,
        fetched_events=len(events),
        landing=landing,
        calls=mailchimp.stats.since(before),
    )


@dataclass(frozen=True)
class RecipientSync:
    """What one recipients step did, and whether sent-to was read; the rows themselves stay in the landing tables."""

    campaign_id: str
    store: LandingStore
    fetched_sent_to: bool
    new_members: int
    landed_members: int
    new_quarantined: int
    is_automation: bool
    calls: MailchimpCallStats

    @property
    def recipients(self) -> pd.DataFrame:
        """The campaign_recipients frame of this campaign as landed now (read from the landing tables)."""
        return self.store.campaign_recipients([self.campaign_id])


def fetch_and_land_recipients(
    mailchimp: MailchimpResource,
    store: LandingStore,
    campaign_id: str,
    report: Mapping[str, Any] | None = None,
) -> RecipientSync:
    """Land a campaign's sent-to and its send time, reading sent-to only when it can have changed.

    A sent regular campaign's sent-to is fixed once every email is out, so when the landed rows
    already number the report's `emails_sent` a re-sync reads no sent-to page at all. Automation
    emails keep gaining recipients and are always re-read. ``report`` is the campaign's row of
    mailchimp_campaign_report (campaign_type, emails_sent, send_time) when the caller has it, so a
    run fetches /reports/{id} once; without it the report is fetched here.
    """
    before = mailchimp.stats.snapshot()
    if report is None:
        report = parse_campaign_report(mailchimp.fetch_report(campaign_id)).iloc[0].to_dict()
    is_automation = is_automation_type(report.get("campaign_type"))
    emails_sent = report.get("emails_sent")
    emails_sent = int(emails_sent) if isinstance(emails_sent, (int, np.integer)) else None
    landed = store.recipient_count(campaign_id)
    complete = not is_automation and isinstance(emails_sent, int) and emails_sent > 0 and landed == emails_sent
    new_members = new_quarantined = 0
    if not complete:
        parse_page = partial(parse_sent_to, campaign_id, sent_at=None, sent_at_is_exact=not is_automation)
        parsed = merged_pages(mailchimp.fetch_recipient_pages(campaign_id, parse_page), "recipients")
        new_members = store.land_recipients(campaign_id, parsed.frame)
        if not parsed.quarantined.empty:
            new_quarantined = store.land(
                campaign_id, empty_raw_email_events(), parsed.quarantined, None
            ).new_quarantined
    send_time = report.get("send_time")
    send_time = None if send_time is None or pd.isna(send_time) else pd.Timestamp(send_time)
    store.land_send(campaign_id, send_time, not is_automation)
    return RecipientSync(
        campaign_id=campaign_id,
        store=store,
        fetched_sent_to=not complete,
        new_members=new_members,
        landed_members=landed + new_members,
        new_quarantined=new_quarantined,
        is_automation=is_automation,
        calls=mailchimp.stats.since(before),
    )
