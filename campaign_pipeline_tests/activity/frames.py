"""Small literal frames (events, recipients, statuses, matches, report, content) for the activity-mode tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from campaign_pipeline.core.events import email_hash, event_ids
from campaign_pipeline.core.metrics import member_statuses

SEND = pd.Timestamp("2026-03-02 15:00", tz="UTC")
EVENT_COLUMNS = ["event_id", "campaign_id", "email_id", "email_address", "action", "timestamp", "url", "bounce_type"]


def events(*rows: tuple, campaign_id: str = "c1") -> pd.DataFrame:
    """rows: (address, action, UTC instant text) plus the URL for clicks or the bounce type for bounces."""
    records = []
    for row in rows:
        address, action, instant = row[0], row[1], pd.Timestamp(row[2], tz="UTC")
        extra = row[3] if len(row) > 3 else pd.NA
        records.append(
            {
                "campaign_id": campaign_id,
                "email_id": email_hash(address),
                "email_address": address,
                "action": action,
                "timestamp": instant,
                "url": extra if action == "click" else pd.NA,
                "bounce_type": extra if action == "bounce" else pd.NA,
            }
        )
    frame = pd.DataFrame(records, columns=EVENT_COLUMNS[1:])
    for column in ("campaign_id", "email_id", "email_address", "action", "url", "bounce_type"):
        frame[column] = frame[column].astype(object)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    frame.insert(0, "event_id", event_ids(frame))
    return frame


def recipients(
    *addresses: str, campaign_id: str = "c1", exact: bool = True, bounced: dict | None = None
) -> pd.DataFrame:
    bounced = bounced or {}
    return pd.DataFrame(
        {
            "campaign_id": pd.Series([campaign_id] * len(addresses), dtype=object),
            "email_id": pd.Series([email_hash(a) for a in addresses], dtype=object),
            "email_address": pd.Series(list(addresses), dtype=object),
            "send_status": pd.Series([bounced.get(a, "sent") for a in addresses], dtype=object),
            "sent_at": pd.Series([SEND] * len(addresses), dtype="datetime64[ns, UTC]"),
            "sent_at_is_exact": pd.Series([exact] * len(addresses), dtype=bool),
        }
    )


def statuses(recipient_frame: pd.DataFrame, event_frame: pd.DataFrame) -> pd.DataFrame:
    return member_statuses(recipient_frame, event_frame)


def matches(people: dict[str, tuple[str, str]], campaign_id: str = "c1") -> pd.DataFrame:
    """address -> (Salesforce Id, Lead/Contact), as salesforce_matches rows."""
    return pd.DataFrame(
        {
            "campaign_id": pd.Series([campaign_id] * len(people), dtype=object),
            "email_id": pd.Series([email_hash(a) for a in people], dtype=object),
            "email_address": pd.Series(list(people), dtype=object),
            "salesforce_id": pd.Series([p[0] for p in people.values()], dtype=object),
            "salesforce_object": pd.Series([p[1] for p in people.values()], dtype=object),
        }
    )


def report(campaign_id: str = "c1", title: str | None = "Test campaign 1", subject: str = "Hello") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": pd.Series([campaign_id], dtype=object),
            "campaign_title": pd.Series([title], dtype=object),
            "subject_line": pd.Series([subject], dtype=object),
            "campaign_type": pd.Series(["regular"], dtype=object),
            "send_time": pd.Series([SEND], dtype="datetime64[ns, UTC]"),
            "emails_sent": np.int64(0),
        }
    )


def content(html: str | None, campaign_id: str = "c1") -> pd.DataFrame:
    return pd.DataFrame({"campaign_id": [campaign_id], "html": [html]}).astype(object)
