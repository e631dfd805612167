"""The names the whole project shares: Mailchimp event actions, bounce and send statuses, member statuses."""

from __future__ import annotations

# Mailchimp's per-member actions: email-activity gives open, click and bounce; unsubscribes come separately.
EVENT_ACTIONS: tuple[str, ...] = ("open", "click", "bounce", "unsubscribe")
ACTIVITY_ACTIONS: tuple[str, ...] = ("open", "click", "bounce")
BOUNCE_TYPES: tuple[str, ...] = ("hard", "soft")
# A recipient's status in sent-to: delivered, or bounced hard/soft at the send.
SEND_STATUSES: tuple[str, ...] = ("sent", *BOUNCE_TYPES)

# Member statuses in rank order, highest first: at one instant Clicked wins; Sent is a member with no event.
MEMBER_STATUSES: tuple[str, ...] = ("Clicked", "Opened", "Bounced", "Unsubscribed", "Sent")
SENT = "Sent"
# The same statuses in the order people read them (CampaignMemberStatus values on a Campaign): the send, the
# responses, then the negatives.
MEMBER_STATUS_DISPLAY_ORDER: tuple[str, ...] = ("Sent", "Opened", "Clicked", "Bounced", "Unsubscribed")
# The status each action stands for.
STATUS_BY_ACTION: dict[str, str] = {
    "click": "Clicked",
    "open": "Opened",
    "bounce": "Bounced",
    "unsubscribe": "Unsubscribed",
}
# Statuses that count as a response (CampaignMemberStatus.HasResponded).
RESPONDED_STATUSES: tuple[str, ...] = ("Clicked", "Opened")
