"""Builders of small literal frames in the shapes of docs/frames.md, for the core and metrics tests."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SEND = pd.Timestamp("2024-03-01 09:00", tz="UTC")


def email_id(address: str) -> str:
    return hashlib.md5(address.strip().lower().encode()).hexdigest()


def at(text: str) -> pd.Timestamp:
    """An instant; text without an offset is UTC, text with one is converted."""
    stamp = pd.Timestamp(text)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def recipients(*rows: tuple, campaign_id: str = "c1", sent_at: pd.Timestamp = SEND, exact: bool = True) -> pd.DataFrame:
    """rows: (address,) or (address, send_status)."""
    addresses = [row[0] for row in rows]
    return pd.DataFrame(
        {
            "campaign_id": pd.Series([campaign_id] * len(rows), dtype=object),
            "email_id": pd.Series([email_id(a) for a in addresses], dtype=object),
            "email_address": pd.Series(addresses, dtype=object),
            "send_status": pd.Series([row[1] if len(row) > 1 else "sent" for row in rows], dtype=object),
            "sent_at": pd.Series([sent_at] * len(rows), dtype="datetime64[ns, UTC]"),
            "sent_at_is_exact": pd.Series([exact] * len(rows), dtype=bool),
        }
    )


def events(*rows: tuple, campaign_id: str = "c1") -> pd.DataFrame:
    """rows: (address, action, instant text) plus url for clicks or bounce_type for bounces."""
    records = []
    for row in rows:
        address, action, instant = row[0], row[1], at(row[2])
        extra = row[3] if len(row) > 3 else pd.NA
        url = extra if action == "click" else pd.NA
        bounce_type = extra if action == "bounce" else pd.NA
        identity = "|".join(
            [campaign_id, email_id(address), action, instant.isoformat(), "" if url is pd.NA else str(url)]
        )
        records.append(
            {
                "event_id": hashlib.sha1(identity.encode()).hexdigest(),
                "campaign_id": campaign_id,
                "email_id": email_id(address),
                "email_address": address,
                "action": action,
                "timestamp": instant,
                "url": url,
                "bounce_type": bounce_type,
            }
        )
    frame = pd.DataFrame(
        records,
        columns=["event_id", "campaign_id", "email_id", "email_address", "action", "timestamp", "url", "bounce_type"],
    )
    for column in ("event_id", "campaign_id", "email_id", "email_address", "action", "url", "bounce_type"):
        frame[column] = frame[column].astype(object)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return frame


def report(campaign_id: str = "c1", **numbers: float) -> pd.DataFrame:
    """A one-row Mailchimp report; counts default to 0, rates to 0.0."""
    counts = dict.fromkeys(
        [
            "emails_sent",
            "abuse_reports",
            "unsubscribed",
            "hard_bounces",
            "soft_bounces",
            "forwards_count",
            "forwards_opens",
            "opens_total",
            "unique_opens",
            "clicks_total",
            "unique_clicks",
            "unique_subscriber_clicks",
        ],
        0,
    )
    rates = {"open_rate": 0.0, "click_rate": 0.0}
    for name, value in numbers.items():
        if name in counts:
            counts[name] = value
        elif name in rates:
            rates[name] = value
        else:
            raise KeyError(name)
    frame = pd.DataFrame(
        {
            "campaign_id": pd.Series([campaign_id], dtype=object),
            "campaign_title": pd.Series(["Spring sale"], dtype=object),
            "subject_line": pd.Series(["Spring is here"], dtype=object),
            "campaign_type": pd.Series(["regular"], dtype=object),
            "send_time": pd.Series([SEND], dtype="datetime64[ns, UTC]"),
        }
    )
    for name, value in counts.items():
        frame[name] = np.int64(value)
    for name, value in rates.items():
        frame[name] = np.float64(value)
    return frame


def row_of(frame: pd.DataFrame, address: str, campaign_id: str = "c1") -> pd.Series:
    """The member_statuses row of one address; fails unless there is exactly one."""
    rows = frame[(frame["email_id"] == email_id(address)) & (frame["campaign_id"] == campaign_id)]
    assert len(rows) == 1, f"expected one row for {address}, got {len(rows)}"
    return rows.iloc[0]
