"""Test oracle of the sandbox Mailchimp account: what its API serves now, as the frames the pipeline should land.

Tests and benchmarks compare the pipeline's output with these frames; nothing in the sandbox's API or in
production code calls them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.mailchimp_model import (
    ACTION_BOUNCE,
    ACTION_CLICK,
    ACTION_NAMES,
    ACTION_UNSUBSCRIBE,
    STATUS_NAMES,
    UNPARSABLE_TIMESTAMP,
    email_id_of,
)

TRUTH_EVENT_COLUMNS = [
    "campaign_id",
    "email_id",
    "email_address",
    "action",
    "timestamp",
    "url",
    "bounce_type",
]
TRUTH_RECIPIENT_COLUMNS = [
    "campaign_id",
    "email_id",
    "email_address",
    "send_status",
    "sent_at",
    "sent_at_is_exact",
]
MALFORMED_COLUMNS = ["campaign_id", "endpoint", "email_id", "email_address", "raw", "reason"]


def truth_events(account: SandboxAccount, campaign_id: str, filter_bots: bool = False) -> pd.DataFrame:
    """Every valid event the API serves now (email-activity + unsubscribed), one row each, in frames.md columns.

    With `filter_bots`, what email-activity serves with ``filter_bots=true``: no privacy-proxy opens.
    """
    spec = account.require_sent(campaign_id)
    now = account.now_epoch
    frames = []
    for page in account.scan(spec, now):
        mask = page.visible(now, filter_bots=filter_bots)
        rows = page.ev_row[mask]
        action = page.ev_action[mask]
        addresses = np.array(account.member_addresses(page.members), dtype=object)
        activity_spelling = np.where(
            page.lower_in_activity, np.array([a.lower() for a in addresses], dtype=object), addresses
        )
        written = np.where(action == ACTION_UNSUBSCRIBE, addresses[rows], activity_spelling[rows])
        url_lookup = np.array(list(spec.urls), dtype=object)
        frames.append(
            pd.DataFrame(
                {
                    "campaign_id": spec.campaign_id,
                    "email_id": [email_id_of(a) for a in written],
                    "email_address": written,
                    "action": ACTION_NAMES[action],
                    "timestamp": pd.to_datetime(page.ev_ts[mask], unit="s", utc=True),
                    "url": np.where(action == ACTION_CLICK, url_lookup[np.maximum(page.ev_url[mask], 0)], None),
                    "bounce_type": np.where(
                        action == ACTION_BOUNCE, STATUS_NAMES[np.maximum(page.ev_bounce[mask], 0)], None
                    ),
                }
            )
        )
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TRUTH_EVENT_COLUMNS)
    for column in ("campaign_id", "email_id", "email_address", "action", "url", "bounce_type"):
        events[column] = events[column].astype(object).where(events[column].notna(), pd.NA)
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return events[TRUTH_EVENT_COLUMNS].reset_index(drop=True)


def truth_recipients(account: SandboxAccount, campaign_id: str) -> pd.DataFrame:
    """The campaign_recipients frame (docs/frames.md) the API's sent-to implies now."""
    spec = account.require_sent(campaign_id)
    now = account.now_epoch
    frames = []
    for page in account.scan(spec, now):
        addresses = account.member_addresses(page.members)
        frames.append(
            pd.DataFrame(
                {
                    "campaign_id": spec.campaign_id,
                    "email_id": [email_id_of(a) for a in addresses],
                    "email_address": addresses,
                    "send_status": STATUS_NAMES[page.status],
                    "sent_at": pd.Timestamp(spec.send_time, unit="s", tz="UTC"),
                    "sent_at_is_exact": not spec.is_automation,
                }
            )
        )
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in TRUTH_RECIPIENT_COLUMNS})
        empty["sent_at"] = pd.Series(dtype="datetime64[ns, UTC]")
        empty["sent_at_is_exact"] = pd.Series(dtype=bool)
        return empty
    recipients = pd.concat(frames, ignore_index=True)
    recipients["sent_at"] = recipients["sent_at"].astype("datetime64[ns, UTC]")
    recipients["sent_at_is_exact"] = recipients["sent_at_is_exact"].astype(bool)
    return recipients[TRUTH_RECIPIENT_COLUMNS]


def malformed_records(account: SandboxAccount, campaign_id: str) -> pd.DataFrame:
    """The deliberately malformed records the API serves now (full fetch, no `since`), with the reason."""
    spec = account.require_sent(campaign_id)
    plan = account.malformed_plan(spec)
    now = account.now_epoch
    rows: list[dict[str, Any]] = []
    if plan is not None:
        recipients = np.asarray(account.visible_recipients(spec, now))
        for member, reason, wanted in (
            (plan["bad_timestamp_member"], "unparsable timestamp", True),
            (plan["missing_action_member"], "missing action", plan["missing_action_at"] <= now),
        ):
            if not wanted or not np.isin(member, recipients).item():
                continue
            entry = account.activity_entries(spec, np.array([member]), None)[0]
            bad = [a for a in entry["activity"] if "action" not in a or a.get("timestamp") == UNPARSABLE_TIMESTAMP]
            rows.append(
                {
                    "campaign_id": spec.campaign_id,
                    "endpoint": "email-activity",
                    "email_id": entry["email_id"],
                    "email_address": entry["email_address"],
                    "raw": json.dumps(bad[0], ensure_ascii=False),
                    "reason": reason,
                }
            )
        if plan["empty_email_at"] <= now:
            entry = account.empty_email_entry(spec)
            rows.append(
                {
                    "campaign_id": spec.campaign_id,
                    "endpoint": "email-activity",
                    "email_id": "",
                    "email_address": "",
                    "raw": json.dumps(entry, ensure_ascii=False),
                    "reason": "empty email address",
                }
            )
    return pd.DataFrame(rows, columns=MALFORMED_COLUMNS)
