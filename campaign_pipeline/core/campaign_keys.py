"""Campaign partition keys people recognise: send date, a slug of the title, and the Mailchimp campaign id last."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime

from campaign_pipeline.core.events import is_valid_campaign_id

# Long enough to tell campaigns apart in the partition picker, short enough to leave the id visible beside it.
SLUG_MAX_CHARS = 40
UNTITLED_SLUG = "untitled"
# `<YYYY-MM-DD>_<slug>_<campaign id>`: the slug holds no `_`, so the campaign id is what follows the last one.
_KEY_PATTERN = re.compile(r"^(\d{4}-\d{2}-\d{2})_([a-z0-9]+(?:-[a-z0-9]+)*)_([A-Za-z0-9]{1,64})$")


class CampaignKeyError(ValueError):
    """A partition key that is neither a campaign key nor a bare Mailchimp campaign id."""


def title_slug(title: str | None) -> str:
    """Lower-case ASCII letters and digits joined by `-`, cut at a word boundary; `untitled` when nothing is left."""
    ascii_title = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_title.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > SLUG_MAX_CHARS:
            if not slug:  # a single over-long word is cut rather than dropped
                slug = word[:SLUG_MAX_CHARS]
            break
        slug = candidate
    return slug or UNTITLED_SLUG


def campaign_partition_key(send_time: datetime, title: str | None, campaign_id: str) -> str:
    """The partition key of a campaign: `2026-11-03_newsletter-3-last-chance_7174cc3265`.

    The UTC send date comes first so keys sort by send date; the id comes last so the key stays unique and the
    campaign is recovered from it (``campaign_id_from_key``). Only letters, digits, `-` and `_`: nothing Dagster
    reserves in partition keys (`...`, control characters) nor the `,` and `|` its ranges and multi-keys use.
    """
    if not is_valid_campaign_id(campaign_id):
        raise CampaignKeyError(f"campaign id {campaign_id!r} is not a Mailchimp campaign id (letters and digits only)")
    if send_time.tzinfo is None:
        raise CampaignKeyError(f"campaign {campaign_id}: send time {send_time!r} has no time zone")
    send_date = send_time.astimezone(UTC).strftime("%Y-%m-%d")
    return f"{send_date}_{title_slug(title)}_{campaign_id}"


def campaign_id_from_key(key: str) -> str:
    """The Mailchimp campaign id of a partition key; a bare campaign id (the keys before send dates) is its own."""
    match = _KEY_PATTERN.match(key) if isinstance(key, str) else None
    if match:
        return match.group(3)
    if is_valid_campaign_id(key):
        return key
    raise CampaignKeyError(
        f"partition key {key!r} is not a campaign key (<send date>_<title>_<campaign id>) nor a Mailchimp campaign id"
    )


def is_bare_campaign_id(key: str) -> bool:
    """True for a key of the old shape, the campaign id alone, which the sensor replaces by a dated key."""
    return is_valid_campaign_id(key)


def keys_by_campaign_id(keys: Iterable[str]) -> dict[str, str]:
    """campaign id -> its partition key, over ``keys`` (a dated key wins over a bare id of the same campaign).

    The campaign id decides identity: a campaign that has a partition keeps that key even when its title is edited
    after the send. Keys of neither shape are not campaigns and are left out.
    """
    found: dict[str, str] = {}
    for key in keys:
        try:
            campaign_id = campaign_id_from_key(key)
        except CampaignKeyError:
            continue
        if campaign_id not in found or is_bare_campaign_id(found[campaign_id]):
            found[campaign_id] = key
    return found
