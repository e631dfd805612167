"""A minimal reference fetch over the real client, used to check the sandbox serves exactly its truth."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import mailchimp_marketing
import pandas as pd

from campaign_pipeline.sandbox.mailchimp_oracle import TRUTH_EVENT_COLUMNS, TRUTH_RECIPIENT_COLUMNS


def fetch_pages(call, key: str, page_size: int, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged endpoint, following total_items."""
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = call(count=page_size, offset=offset, **params)
        items.extend(body[key])
        offset += page_size
        if offset >= body["total_items"]:
            return items


def _is_parsable(timestamp: str) -> bool:
    try:
        datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return False
    return True


def fetch_events(
    client: mailchimp_marketing.Client, campaign_id: str, page_size: int = 100, since: str | None = None
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(valid events as a truth-shaped frame, quarantined raw records) from email-activity and unsubscribed."""
    params = {"since": since} if since else {}
    members = fetch_pages(
        lambda **kw: client.reports.get_email_activity_for_campaign(campaign_id, **kw), "emails", page_size, **params
    )
    rows, quarantined = [], []
    for member in members:
        if not member["email_address"]:
            quarantined.append(member)
            continue
        for activity in member["activity"]:
            if "action" not in activity or not _is_parsable(activity.get("timestamp")):
                quarantined.append(activity)
                continue
            rows.append(
                {
                    "campaign_id": campaign_id,
                    "email_id": member["email_id"],
                    "email_address": member["email_address"],
                    "action": activity["action"],
                    "timestamp": activity["timestamp"],
                    "url": activity.get("url"),
                    "bounce_type": activity.get("type"),
                }
            )
    if since is None:
        unsubscribes = fetch_pages(
            lambda **kw: client.reports.get_unsubscribed_list_for_campaign(campaign_id, **kw), "unsubscribes", page_size
        )
        for unsubscribe in unsubscribes:
            rows.append(
                {
                    "campaign_id": campaign_id,
                    "email_id": unsubscribe["email_id"],
                    "email_address": unsubscribe["email_address"],
                    "action": "unsubscribe",
                    "timestamp": unsubscribe["timestamp"],
                    "url": None,
                    "bounce_type": None,
                }
            )
    frame = pd.DataFrame(rows, columns=TRUTH_EVENT_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame, quarantined


def fetch_recipients(client: mailchimp_marketing.Client, campaign_id: str, page_size: int = 100) -> pd.DataFrame:
    recipients = fetch_pages(
        lambda **kw: client.reports.get_campaign_recipients(campaign_id, **kw), "sent_to", page_size
    )
    report = client.reports.get_campaign_report(campaign_id)
    frame = pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "email_id": [r["email_id"] for r in recipients],
            "email_address": [r["email_address"] for r in recipients],
            "send_status": [r["status"] for r in recipients],
            "sent_at": pd.Timestamp(report["send_time"]).tz_convert("UTC"),
            "sent_at_is_exact": report["type"] != "automation",
        }
    )
    return frame[TRUTH_RECIPIENT_COLUMNS]


def canonical(events: pd.DataFrame) -> pd.DataFrame:
    """Events in a comparable order with NA-normalised optional columns."""
    out = events.copy()
    for column in ("url", "bounce_type"):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    out["timestamp"] = out["timestamp"].astype("datetime64[ns, UTC]")
    return out.sort_values(["email_id", "timestamp", "action", "url"], na_position="first").reset_index(drop=True)
