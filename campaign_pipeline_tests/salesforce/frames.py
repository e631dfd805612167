"""Small literal upstream frames (member_statuses, campaign_totals, campaign report) for Salesforce tests."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SENT_AT = pd.Timestamp("2026-03-02 15:00", tz="UTC")


def email_id(address: str) -> str:
    return hashlib.md5(address.strip().lower().encode()).hexdigest()


def member_statuses(
    campaign_id: str, statuses: dict[str, str], *, exact: bool = True, opens: dict | None = None
) -> pd.DataFrame:
    """member_statuses rows for `campaign_id`: address -> latest status; `opens` overrides total_opens."""
    opens = opens or {}
    rows = []
    for offset, (address, status) in enumerate(statuses.items()):
        event_at = SENT_AT + pd.Timedelta(minutes=10 + offset)
        clicked = status == "Clicked"
        opened = status in ("Clicked", "Opened")
        rows.append(
            {
                "campaign_id": campaign_id,
                "email_id": email_id(address),
                "email_address": address,
                "is_recipient": True,
                "send_status": "sent",
                "sent_at": SENT_AT,
                "sent_at_is_exact": exact,
                "latest_status": status,
                "latest_status_at": SENT_AT if status == "Sent" else event_at,
                "total_opens": np.int64(opens.get(address, 1 if opened else 0)),
                "unique_opens": np.int64(1 if opened else 0),
                "total_clicks": np.int64(1 if clicked else 0),
                "unique_clicks": np.int64(1 if clicked else 0),
                "first_open_at": event_at if opened else pd.NaT,
                "last_open_at": event_at if opened else pd.NaT,
                "first_click_at": event_at if clicked else pd.NaT,
                "last_click_at": event_at if clicked else pd.NaT,
                "time_to_open_minutes": float(10 + offset) if opened else np.nan,
                "last_clicked_url": "https://example.com/offer" if clicked else pd.NA,
                "distinct_urls_clicked": np.int64(1 if clicked else 0),
                "bounce_type": "hard" if status == "Bounced" else pd.NA,
                "unsubscribed_at": event_at if status == "Unsubscribed" else pd.NaT,
                "was_opened": opened,
                "was_clicked": clicked,
                "was_bounced": status == "Bounced",
                "was_unsubscribed": status == "Unsubscribed",
            }
        )
    frame = pd.DataFrame(rows)
    for column in (
        "sent_at",
        "latest_status_at",
        "first_open_at",
        "last_open_at",
        "first_click_at",
        "last_click_at",
        "unsubscribed_at",
    ):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("last_clicked_url", "bounce_type", "send_status"):
        frame[column] = frame[column].astype(object)
    return frame


def campaign_totals(member_frame: pd.DataFrame) -> pd.DataFrame:
    """campaign_totals consistent with a member_statuses frame (forwards and abuse reports zero)."""
    grouped = member_frame.groupby("campaign_id")
    totals = pd.DataFrame(
        {
            "emails_sent": grouped.size().astype("int64"),
            "delivered": grouped["was_bounced"].apply(lambda s: (~s).sum()).astype("int64"),
            "unique_opens": grouped["unique_opens"].sum().astype("int64"),
            "total_opens": grouped["total_opens"].sum().astype("int64"),
            "unique_subscriber_clicks": grouped["unique_clicks"].sum().astype("int64"),
            "total_clicks": grouped["total_clicks"].sum().astype("int64"),
            "hard_bounces": grouped["was_bounced"].sum().astype("int64"),
            "soft_bounces": np.int64(0),
            "unsubscribes": grouped["was_unsubscribed"].sum().astype("int64"),
            "forwards": np.int64(0),
            "forward_opens": np.int64(0),
            "abuse_reports": np.int64(0),
        }
    ).reset_index()
    delivered = totals["delivered"].replace(0, np.nan)
    totals["open_rate"] = (totals["unique_opens"] / delivered).fillna(0.0)
    totals["click_rate"] = (totals["unique_subscriber_clicks"] / delivered).fillna(0.0)
    totals["click_to_open_rate"] = (
        totals["unique_subscriber_clicks"] / totals["unique_opens"].replace(0, np.nan)
    ).fillna(0.0)
    totals["non_recipient_members"] = np.int64(0)
    return totals


def campaign_report(
    campaign_id: str,
    *,
    title: str | None = "Spring offer",
    subject: str = "Our spring offer",
    campaign_type: str = "regular",
) -> pd.DataFrame:
    """A one-row mailchimp_campaign_report (only the columns the Salesforce side reads matter)."""
    return pd.DataFrame(
        {
            "campaign_id": [campaign_id],
            "campaign_title": pd.Series([title], dtype=object),
            "subject_line": [subject],
            "campaign_type": [campaign_type],
            "send_time": pd.to_datetime([SENT_AT], utc=True),
            "emails_sent": np.int64(0),
        }
    )
