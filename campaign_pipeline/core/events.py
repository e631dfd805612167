"""Turn Mailchimp report pages (email-activity, unsubscribed, sent-to) into the frames of docs/frames.md."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from campaign_pipeline.core import vocabulary
from campaign_pipeline.core.campaign_types import canonical_campaign_type
from campaign_pipeline.core.ordering import sort_positions

RAW_EMAIL_EVENT_COLUMNS = [
    "event_id",
    "campaign_id",
    "email_id",
    "email_address",
    "action",
    "timestamp",
    "url",
    "bounce_type",
    "occurrence",
]
CAMPAIGN_RECIPIENT_COLUMNS = [
    "campaign_id",
    "email_id",
    "email_address",
    "send_status",
    "sent_at",
    "sent_at_is_exact",
]
QUARANTINE_COLUMNS = ["campaign_id", "source", "record", "reason"]

ACTIVITY_ACTIONS = frozenset(vocabulary.ACTIVITY_ACTIONS)
BOUNCE_TYPES = frozenset(vocabulary.BOUNCE_TYPES)
SEND_STATUSES = frozenset(vocabulary.SEND_STATUSES)
# A bounce Mailchimp reports without a `type`: still a bounce, of a kind Mailchimp did not say.
UNKNOWN_BOUNCE_TYPE = "unknown"

# Mailchimp ids are short alphanumeric strings; anything else would make an unsafe partition key.
_CAMPAIGN_ID_PATTERN = re.compile(r"^[A-Za-z0-9]{1,64}$")
# An ISO 8601 date-time that says its offset: a time of day, then "Z", "+02:00", "+0200" or "+02".
_OFFSET_PATTERN = re.compile(r"[T ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
# Deliberately loose: one "@" with something on both sides. Mailchimp already validated the
# address when it was subscribed; this only catches records that are broken in transit.
_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+$")


def is_valid_campaign_id(campaign_id: object) -> bool:
    """True when the id is a Mailchimp-shaped campaign id, safe to use as a Dagster partition key."""
    return isinstance(campaign_id, str) and bool(_CAMPAIGN_ID_PATTERN.match(campaign_id))


def email_hash(email_address: str) -> str:
    """Mailchimp's subscriber hash: md5 of the lower-cased, stripped address."""
    return hashlib.md5(email_address.strip().lower().encode("utf-8")).hexdigest()


def email_hashes(email_addresses: pd.Series) -> pd.Series:
    """email_hash over a column; lower/strip are vectorised, md5 itself has no vector form."""
    normalised = email_addresses.astype(str).str.strip().str.lower()
    hashes = [hashlib.md5(address.encode("utf-8")).hexdigest() for address in normalised]
    return pd.Series(hashes, index=email_addresses.index, dtype=object)


def iso_utc_strings(timestamps: pd.Series) -> pd.Series:
    """Instants as fixed-width UTC text, `2026-01-05T10:00:00.000000Z` (strftime's `%Y-%m-%dT%H:%M:%S.%fZ`), null
    as None: the form event identities hash and COPY reads. numpy formats it about ten times faster than strftime.
    """
    utc = timestamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.char.add(np.datetime_as_string(utc, unit="us"), "Z").astype(object)
    missing = np.isnat(utc)
    if missing.any():
        text[missing] = None
    return pd.Series(text, index=timestamps.index, dtype=object)


def _iso_utc(timestamps: pd.Series) -> pd.Series:
    # Fixed-width microsecond form so one instant always gives one string, whatever offset
    # Mailchimp wrote it with.
    return iso_utc_strings(timestamps)


def event_ids(events: pd.DataFrame) -> pd.Series:
    """sha1 of campaign_id|email_id|action|timestamp(ISO UTC)|url — the identity of an event.

    A same-second repeat (Mailchimp counts two clicks of one link in one second twice) has occurrence
    n > 0 and "|#n" appended; occurrence 0 keeps the plain identity, so ids landed before stay valid.
    """
    if events.empty:
        return pd.Series([], index=events.index, dtype=object)
    urls = events["url"].astype(object).where(events["url"].notna(), "")
    occurrence = (
        events["occurrence"].to_numpy(dtype=np.int64)
        if "occurrence" in events
        else np.zeros(len(events), dtype=np.int64)
    )
    repeat_suffix = pd.Series(
        np.where(occurrence > 0, np.char.add("|#", occurrence.astype(str)), ""), index=events.index, dtype=object
    )
    identity = (
        events["campaign_id"].astype(str)
        + "|"
        + events["email_id"].astype(str)
        + "|"
        + events["action"].astype(str)
        + "|"
        + _iso_utc(events["timestamp"])
        + "|"
        + urls.astype(str)
        + repeat_suffix
    )
    ids = [hashlib.sha1(key.encode("utf-8")).hexdigest() for key in identity]
    return pd.Series(ids, index=events.index, dtype=object)


@dataclass(frozen=True)
class ParsedRecords:
    """Rows that passed validation, and the records split off with the reason they were refused."""

    frame: pd.DataFrame
    quarantined: pd.DataFrame


def empty_raw_email_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": pd.Series([], dtype=object),
            "campaign_id": pd.Series([], dtype=object),
            "email_id": pd.Series([], dtype=object),
            "email_address": pd.Series([], dtype=object),
            "action": pd.Series([], dtype=object),
            "timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
            "url": pd.Series([], dtype=object),
            "bounce_type": pd.Series([], dtype=object),
            "occurrence": pd.Series([], dtype=np.int64),
        }
    )


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series([], dtype=object) for column in QUARANTINE_COLUMNS})


def _quarantine_frame(campaign_id: str, source: str, rejected: list[tuple[Any, str]]) -> pd.DataFrame:
    if not rejected:
        return empty_quarantine()
    return pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "source": source,
            "record": [json.dumps(record, sort_keys=True, default=str) for record, _ in rejected],
            "reason": [reason for _, reason in rejected],
        },
        columns=QUARANTINE_COLUMNS,
    )


def _text_or_na(values: pd.Series) -> pd.Series:
    """Strings stay, blanks and non-strings become NA (the frames never hold empty strings)."""
    as_object = values.astype(object)
    is_text = as_object.map(lambda value: isinstance(value, str) and value.strip() != "").astype(bool)
    return as_object.where(is_text, pd.NA)


def _parse_timestamps(values: pd.Series) -> pd.Series:
    as_text = values.astype(object).where(values.map(lambda value: isinstance(value, str)).astype(bool), None)
    return pd.to_datetime(as_text, utc=True, errors="coerce", format="ISO8601").astype("datetime64[ns, UTC]")


def _member_address_problem(record: Any) -> str | None:
    if not isinstance(record, Mapping):
        return f"record is a {type(record).__name__}, not an object"
    address = record.get("email_address")
    if not isinstance(address, str) or not address.strip():
        return "missing email_address"
    if not _EMAIL_PATTERN.match(address.strip()):
        return f"email_address {address!r} is not an email address"
    return None


def _finish_events(
    campaign_id: str,
    rows: pd.DataFrame,
    source: str,
    rejected: list[tuple[Any, str]],
    allowed_actions: frozenset[str],
) -> ParsedRecords:
    """Validate flattened event rows column-wise, split off the bad ones, compute identities."""
    if rows.empty:
        return ParsedRecords(empty_raw_email_events(), _quarantine_frame(campaign_id, source, rejected))

    timestamps = _parse_timestamps(rows["raw_timestamp"])
    urls = _text_or_na(rows["raw_url"])
    action = rows["action"].astype(object)
    # Mailchimp omits `type` on some bounces: kept as a bounce of unknown type rather than lost.
    bounce_types = rows["raw_bounce_type"].astype(object)
    untyped = bounce_types.isna() | bounce_types.map(lambda value: isinstance(value, str) and not value.strip())
    bounce_types = bounce_types.where(~((action == "bounce") & untyped.astype(bool)), UNKNOWN_BOUNCE_TYPE)
    offset_missing = ~rows["raw_timestamp"].map(
        lambda value: isinstance(value, str) and bool(_OFFSET_PATTERN.search(value.strip()))
    ).astype(bool)

    reasons = pd.Series(pd.NA, index=rows.index, dtype=object)

    def refuse(mask: pd.Series, reason: pd.Series | str) -> None:
        # First reason wins: a record is quarantined once, with the most basic thing wrong with it.
        target = mask & reasons.isna()
        if target.any():
            reasons.loc[target] = reason if isinstance(reason, str) else reason.loc[target]

    refuse(action.isna(), "missing action")
    refuse(~action.isin(allowed_actions), "unknown action " + action.astype(str).map(repr))
    refuse(
        timestamps.isna(),
        "unparseable timestamp " + rows["raw_timestamp"].astype(str).map(repr),
    )
    # Without an offset the instant is a guess (UTC? the account's zone?); guessing could reorder statuses.
    refuse(
        offset_missing,
        "timestamp " + rows["raw_timestamp"].astype(str).map(repr) + " has no UTC offset (ISO 8601 with Z or +hh:mm)",
    )
    refuse((action == "click") & urls.isna(), "click without url")
    refuse(
        (action == "bounce") & ~bounce_types.isin(BOUNCE_TYPES | {UNKNOWN_BOUNCE_TYPE}),
        "bounce with type " + bounce_types.astype(str).map(repr) + " (expected 'hard', 'soft' or none)",
    )

    bad = reasons.notna()
    for position in np.flatnonzero(bad.to_numpy()):
        rejected.append((rows["raw_record"].iat[position], str(reasons.iat[position])))

    good = ~bad
    email_addresses = rows.loc[good, "email_address"].astype(str)
    events = pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "email_id": email_hashes(email_addresses),
            "email_address": email_addresses,
            "action": action[good],
            "timestamp": timestamps[good],
            # url belongs to clicks and bounce_type to bounces; anything else Mailchimp sends
            # along (e.g. a url on an open) is not part of the event's identity.
            "url": urls[good].where(action[good] == "click", pd.NA),
            "bounce_type": bounce_types[good].where(action[good] == "bounce", pd.NA),
        }
    )
    events["occurrence"] = _occurrences(events, rows.loc[good, "record_index"])
    events.insert(0, "event_id", event_ids(events))
    events = dedupe_events(events)
    return ParsedRecords(events, _quarantine_frame(campaign_id, source, rejected))


def _occurrences(events: pd.DataFrame, record_index: pd.Series) -> np.ndarray:
    """0 for the first of identical activities in one member record, 1, 2, ... for its same-second repeats.

    Numbered within a record, in Mailchimp's order: a member record listed twice (a paging artefact)
    gives the same numbers twice and de-duplicates, while repeats inside one record stay apart.
    """
    if events.empty:
        return np.zeros(0, dtype=np.int64)
    keys = pd.DataFrame(
        {
            "record": record_index.to_numpy(),
            "action": events["action"].to_numpy(dtype=object),
            "instant": events["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64),
            "url": events["url"].astype(object).where(events["url"].notna(), "").to_numpy(dtype=object),
        }
    )
    return keys.groupby(["record", "action", "instant", "url"], sort=False).cumcount().to_numpy(dtype=np.int64)


def dedupe_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per event_id, in a stable order (time, then identity)."""
    if events.empty:
        return events.reset_index(drop=True)
    deduped = events.drop_duplicates(subset="event_id", keep="first")
    return deduped.take(sort_positions(deduped, ["timestamp", "event_id"])).reset_index(drop=True)


def parse_email_activity(campaign_id: str, email_records: Iterable[Any]) -> ParsedRecords:
    """Flatten `/reports/{id}/email-activity` `emails` records into raw_email_events rows.

    A record without a usable address is refused whole; an activity with an unknown action, an
    unparseable timestamp or one without an offset, a click without url or a bounce whose type is
    neither hard, soft nor absent is refused alone, and the member's other activity proceeds. A
    bounce without a type is a bounce of type `unknown`; same-second repeats count (occurrence).
    """
    rejected: list[tuple[Any, str]] = []
    addresses: list[str] = []
    actions: list[Any] = []
    raw_timestamps: list[Any] = []
    raw_urls: list[Any] = []
    raw_bounce_types: list[Any] = []
    raw_records: list[Any] = []
    record_indexes: list[int] = []
    for record_index, record in enumerate(email_records):
        problem = _member_address_problem(record)
        if problem is None and not isinstance(record.get("activity", []), list):
            problem = "activity is not a list"
        if problem is not None:
            rejected.append((record, problem))
            continue
        address = record["email_address"]
        for activity in record.get("activity") or []:
            if not isinstance(activity, Mapping):
                rejected.append(
                    (
                        {"email_address": address, "activity": activity},
                        "activity is not an object",
                    )
                )
                continue
            addresses.append(address)
            record_indexes.append(record_index)
            actions.append(activity.get("action"))
            raw_timestamps.append(activity.get("timestamp"))
            raw_urls.append(activity.get("url"))
            raw_bounce_types.append(activity.get("type"))
            raw_records.append(
                {
                    "email_address": address,
                    "email_id": record.get("email_id"),
                    "activity": activity,
                }
            )
    rows = pd.DataFrame(
        {
            "email_address": pd.Series(addresses, dtype=object),
            "action": pd.Series(actions, dtype=object),
            "raw_timestamp": pd.Series(raw_timestamps, dtype=object),
            "raw_url": pd.Series(raw_urls, dtype=object),
            "raw_bounce_type": pd.Series(raw_bounce_types, dtype=object),
            "raw_record": pd.Series(raw_records, dtype=object),
            "record_index": pd.Series(record_indexes, dtype=np.int64),
        }
    )
    return _finish_events(campaign_id, rows, "email-activity", rejected, ACTIVITY_ACTIONS)


def merged_pages(parts: Sequence[ParsedRecords], kind: str) -> ParsedRecords:
    """Records parsed page by page (``parse_email_activity`` or ``parse_sent_to`` of each page) as if parsed at once.

    A member's record is on one page, so identities and occurrences come out the same; a record a paging artefact
    put on two pages is kept once, as a whole-listing parse keeps it (events by event_id, recipients by email_id).
    ``kind`` is ``events`` or ``recipients``.
    """
    if not parts:
        return ParsedRecords(
            empty_raw_email_events() if kind == "events" else empty_campaign_recipients(), empty_quarantine()
        )
    frames = [part.frame for part in parts if len(part.frame)] or [parts[0].frame]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for column in frame.select_dtypes(include="object").columns:
        # concat turns the nulls of a page whose column is all null into NaN; a parse marks them pd.NA.
        if frame[column].isna().any():
            frame[column] = frame[column].where(frame[column].notna(), pd.NA)
    if kind == "events":
        frame = dedupe_events(frame)
    else:
        frame = frame.drop_duplicates(subset="email_id", keep="first").reset_index(drop=True)
    quarantined = [part.quarantined for part in parts if len(part.quarantined)] or [parts[0].quarantined]
    return ParsedRecords(frame, pd.concat(quarantined, ignore_index=True) if len(quarantined) > 1 else quarantined[0])


def parse_unsubscribes(campaign_id: str, unsubscribe_records: Iterable[Any]) -> ParsedRecords:
    """`/reports/{id}/unsubscribed` `unsubscribes` records as raw_email_events rows with action `unsubscribe`."""
    rejected: list[tuple[Any, str]] = []
    kept: list[Mapping[str, Any]] = []
    for record in unsubscribe_records:
        problem = _member_address_problem(record)
        if problem is not None:
            rejected.append((record, problem))
        else:
            kept.append(record)
    rows = pd.DataFrame(
        {
            "email_address": pd.Series([record["email_address"] for record in kept], dtype=object),
            "action": pd.Series(["unsubscribe"] * len(kept), dtype=object),
            "raw_timestamp": pd.Series([record.get("timestamp") for record in kept], dtype=object),
            "raw_url": pd.Series([None] * len(kept), dtype=object),
            "raw_bounce_type": pd.Series([None] * len(kept), dtype=object),
            "raw_record": pd.Series(kept, dtype=object),
            "record_index": pd.Series(np.arange(len(kept)), dtype=np.int64),
        }
    )
    return _finish_events(campaign_id, rows, "unsubscribed", rejected, frozenset({"unsubscribe"}))


def empty_campaign_recipients() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": pd.Series([], dtype=object),
            "email_id": pd.Series([], dtype=object),
            "email_address": pd.Series([], dtype=object),
            "send_status": pd.Series([], dtype=object),
            "sent_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "sent_at_is_exact": pd.Series([], dtype=bool),
        }
    )


def parse_sent_to(
    campaign_id: str,
    sent_to_records: Iterable[Any],
    sent_at: pd.Timestamp | None,
    sent_at_is_exact: bool,
) -> ParsedRecords:
    """`/reports/{id}/sent-to` records as campaign_recipients rows, one per member.

    Mailchimp gives no per-recipient send time, so every row carries the campaign's send time;
    for automation emails that is approximate and `sent_at_is_exact` says so.
    """
    rejected: list[tuple[Any, str]] = []
    kept: list[Mapping[str, Any]] = []
    for record in sent_to_records:
        problem = _member_address_problem(record)
        if problem is None and record.get("status") not in SEND_STATUSES:
            problem = f"send status {record.get('status')!r} is not one of sent, hard, soft"
        if problem is not None:
            rejected.append((record, problem))
        else:
            kept.append(record)
    if not kept:
        return ParsedRecords(
            empty_campaign_recipients(),
            _quarantine_frame(campaign_id, "sent-to", rejected),
        )
    email_addresses = pd.Series([record["email_address"] for record in kept], dtype=object)
    sent_at_utc = pd.NaT if sent_at is None or pd.isna(sent_at) else pd.Timestamp(sent_at).tz_convert("UTC")
    recipients = pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "email_id": email_hashes(email_addresses),
            "email_address": email_addresses,
            "send_status": pd.Series([record["status"] for record in kept], dtype=object),
            "sent_at": pd.Series([sent_at_utc] * len(kept), dtype="datetime64[ns, UTC]"),
            "sent_at_is_exact": bool(sent_at_is_exact),
        }
    )
    # A member is sent a campaign once; a duplicate row (same hash) is a paging artefact.
    recipients = recipients.drop_duplicates(subset="email_id", keep="first").reset_index(drop=True)
    return ParsedRecords(recipients, _quarantine_frame(campaign_id, "sent-to", rejected))


def parse_timestamp(value: Any) -> pd.Timestamp | None:
    """One Mailchimp timestamp as a UTC instant, or None when absent/unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    parsed = pd.to_datetime(value, utc=True, errors="coerce", format="ISO8601")
    return None if pd.isna(parsed) else parsed


REPORT_COUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "emails_sent": ("emails_sent",),
    "abuse_reports": ("abuse_reports",),
    "unsubscribed": ("unsubscribed",),
    "hard_bounces": ("bounces", "hard_bounces"),
    "soft_bounces": ("bounces", "soft_bounces"),
    "forwards_count": ("forwards", "forwards_count"),
    "forwards_opens": ("forwards", "forwards_opens"),
    "opens_total": ("opens", "opens_total"),
    "unique_opens": ("opens", "unique_opens"),
    "clicks_total": ("clicks", "clicks_total"),
    "unique_clicks": ("clicks", "unique_clicks"),
    "unique_subscriber_clicks": ("clicks", "unique_subscriber_clicks"),
}
REPORT_RATE_FIELDS: dict[str, tuple[str, ...]] = {
    "open_rate": ("opens", "open_rate"),
    "click_rate": ("clicks", "click_rate"),
}
# What the open figures are read from when email activity is fetched with `filter_bots=true`: Mailchimp's
# report figures without privacy-proxy opens, so reconciliation compares like with like.
HUMAN_OPEN_FIELDS: dict[str, tuple[str, ...]] = {
    "opens_total": ("opens", "proxy_excluded_opens"),
    "unique_opens": ("opens", "proxy_excluded_unique_opens"),
    "open_rate": ("opens", "proxy_excluded_open_rate"),
}


class ReportError(ValueError):
    """A campaign report that cannot be read; the message names the campaign and the field."""


def _dig(report: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = report
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def bot_opens_filtered(report: Mapping[str, Any]) -> int:
    """Opens Mailchimp leaves out under `filter_bots` (all opens minus proxy-excluded opens); 0 when not reported."""
    total, human = _dig(report, ("opens", "opens_total")), _dig(report, ("opens", "proxy_excluded_opens"))
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (total, human)):
        return 0
    return max(int(total) - int(human), 0)


def parse_campaign_report(
    report: Mapping[str, Any], campaign_type: str | None = None, human_opens_only: bool = False
) -> pd.DataFrame:
    """`/reports/{id}` flattened to the one-row mailchimp_campaign_report frame.

    Missing counters are 0 (Mailchimp omits sections a campaign never had); a counter that is not
    a whole number is an error naming the campaign and field, since reconciliation depends on it.
    With `human_opens_only` (events fetched with `filter_bots`) the open figures are the report's
    proxy-excluded ones; a report without them keeps the plain figures.
    """
    campaign_id = report.get("id")
    if not is_valid_campaign_id(campaign_id):
        raise ReportError(f"campaign report has no usable id (got {campaign_id!r})")
    row: dict[str, Any] = {
        "campaign_id": campaign_id,
        "campaign_title": report.get("campaign_title") if isinstance(report.get("campaign_title"), str) else pd.NA,
        "subject_line": report.get("subject_line") if isinstance(report.get("subject_line"), str) else pd.NA,
        "campaign_type": canonical_campaign_type(campaign_type or report.get("type")),
    }
    send_time = parse_timestamp(report.get("send_time"))
    row["send_time"] = pd.NaT if send_time is None else send_time

    def source(column: str, path: tuple[str, ...]) -> tuple[str, ...]:
        human_path = HUMAN_OPEN_FIELDS.get(column)
        if human_opens_only and human_path is not None and _dig(report, human_path) is not None:
            return human_path
        return path

    for column, path in REPORT_COUNT_FIELDS.items():
        path = source(column, path)
        value = _dig(report, path)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value) or value < 0:
            raise ReportError(f"campaign {campaign_id}: report field {'.'.join(path)} is {value!r}, not a count")
        row[column] = int(value)
    for column, path in REPORT_RATE_FIELDS.items():
        path = source(column, path)
        value = _dig(report, path)
        if value is None:
            value = 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportError(f"campaign {campaign_id}: report field {'.'.join(path)} is {value!r}, not a rate")
        # Mailchimp documents rates as fractions; clamp tiny float noise above 1.
        row[column] = min(max(float(value), 0.0), 1.0)
    frame = pd.DataFrame([row])
    frame["send_time"] = pd.to_datetime(frame["send_time"], utc=True).astype("datetime64[ns, UTC]")
    for column in REPORT_COUNT_FIELDS:
        frame[column] = frame[column].astype("int64")
    for column in ("campaign_id", "campaign_title", "subject_line", "campaign_type"):
        frame[column] = frame[column].astype(object)
    return frame
