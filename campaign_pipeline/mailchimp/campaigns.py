"""A sent campaign as the pipeline knows it (one partition), read from Mailchimp's campaign and automation records."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from campaign_pipeline.core.campaign_types import canonical_campaign_type, is_automation_type, is_known_campaign_type
from campaign_pipeline.core.events import is_valid_campaign_id, parse_timestamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentCampaign:
    """A sent campaign of any type, one send of an RSS campaign, or an automation email: one partition."""

    id: str
    type: str  # canonical (core.campaign_types)
    send_time: pd.Timestamp | None
    title: str | None
    list_id: str | None
    automation_id: str | None = None
    parent_campaign_id: str | None = None  # the RSS campaign a send belongs to

    @property
    def sent_at_is_exact(self) -> bool:
        # Automation emails go out member by member; Mailchimp gives no per-recipient time.
        return not is_automation_type(self.type)


def sent_campaign(record: Any, automation_id: str | None = None) -> SentCampaign | None:
    """The campaign a Mailchimp record describes, or None for one that is not (yet) a send the pipeline syncs."""
    if not isinstance(record, dict):
        return None
    campaign_id = record.get("id")
    if not is_valid_campaign_id(campaign_id):
        logger.warning("Skipping Mailchimp campaign with unusable id %r", campaign_id)
        return None
    status = record.get("status")
    if automation_id is None and status not in ("sent", None):
        return None
    if automation_id is not None and status not in ("sending", "sent", "paused", None):
        return None
    send_time = parse_timestamp(record.get("send_time")) or parse_timestamp(record.get("start_time"))
    if send_time is None:
        return None
    settings = record.get("settings") or {}
    recipients = record.get("recipients") or {}
    campaign_type = "automation" if automation_id is not None else canonical_campaign_type(record.get("type"))
    if not is_known_campaign_type(campaign_type):
        logger.warning(
            "Mailchimp campaign %s has type %r, which this pipeline does not know; it is synced like a regular "
            "campaign",
            campaign_id,
            campaign_type,
        )
    parent = record.get("parent_campaign_id")
    return SentCampaign(
        id=str(campaign_id),
        type=campaign_type,
        send_time=send_time,
        title=settings.get("title") or settings.get("subject_line"),
        list_id=recipients.get("list_id"),
        automation_id=automation_id,
        parent_campaign_id=parent if isinstance(parent, str) and parent else None,
    )
