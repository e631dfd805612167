"""Vocabulary of the synthetic Mailchimp account: constants, stable hashing, response rates, campaign specs, pages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import numpy as np

DEFAULT_ANCHOR = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
DAY_SECONDS = 86_400
HOUR_SECONDS = 3_600

ACTION_OPEN, ACTION_CLICK, ACTION_BOUNCE, ACTION_UNSUBSCRIBE = 0, 1, 2, 3
ACTION_NAMES = np.array(["open", "click", "bounce", "unsubscribe"], dtype=object)
STATUS_SENT, STATUS_SOFT, STATUS_HARD = 0, 1, 2
STATUS_NAMES = np.array(["sent", "soft", "hard"], dtype=object)

UNPARSABLE_TIMESTAMP = "2026-02-30T25:61:00+00:00"
# Chunk size for whole-campaign scans (report totals, `since` filters, truth): bounds memory on huge campaigns.
SCAN_CHUNK = 65_536

FIRST_NAMES = [
    "Anna", "Ben", "Chloé", "David", "Emma", "Félix", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Liam",
    "Maja", "Noah", "Olga", "Pablo", "Quinn", "Renée", "Søren", "Tomás", "Ursula", "Vera", "Will", "Zoë",
    "Łukasz", "Åsa", "José", "Mei", "Priya", "Yusuf",
]  # fmt: skip
LAST_NAMES = [
    "Smith", "Müller", "García", "Novak", "Kowalski", "Jensen", "Rossi", "Dubois", "Silva", "Nguyen",
    "Okafor", "Tanaka", "Çelik", "Andersson", "O'Brien", "Schmidt", "Fernández", "Brown", "Wilson", "Kim",
]  # fmt: skip
DOMAINS = [
    "example.com", "example.org", "mail.example.net", "Example.co.uk", "corp.example.com", "example.de",
    "postfach.example", "EXAMPLE.io",
]  # fmt: skip
URL_PATHS = [
    "https://shop.example.com/spring-sale?utm_source=mailchimp&utm_campaign={slug}",
    "https://www.example.com/blog/{slug}",
    "https://www.example.com/webinar/register?id={slug}",
    "https://shop.example.com/product/42?ref={slug}",
    "https://www.example.com/preferences#{slug}",
]
UNSUBSCRIBE_REASONS = [
    "N/A (Unsubscribed from list)",
    "I no longer want to receive these emails",
    "I never signed up for this mailing list",
    "The emails are inappropriate",
    "The emails are spam and should be reported",
]
SUBJECTS = [
    "Our spring collection is here",
    "Five ideas for your next project",
    "Last chance: 20% off ends tonight",
    "Invitation: product webinar",
    "What’s new this month",
    "A quick question for you",
]

# splitmix64 constants: a cheap, well-mixed counter-based hash, vectorised over member indices.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic is intended)."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stable_key(*parts: object) -> int:
    """A stable 64-bit key from any parts (seed, campaign slot, purpose)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def hex_id(*parts: object, length: int = 10) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:length]


def uniforms(key: int, members: np.ndarray, n_streams: int) -> np.ndarray:
    """(n_streams, len(members)) uniforms in [0, 1), a pure function of key, member index and stream number."""
    base = mix64(members.astype(np.uint64) ^ np.uint64(key))
    streams = np.arange(1, n_streams + 1, dtype=np.uint64)[:, None] * _GOLDEN
    return (mix64(base[None, :] + streams) >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def email_id_of(address: str) -> str:
    """Mailchimp's subscriber hash: md5 of the stripped, lower-cased address."""
    return hashlib.md5(address.strip().lower().encode("utf-8")).hexdigest()


def format_timestamp(epoch_seconds: int, offset_hours: int = 0) -> str:
    """ISO 8601 with an explicit offset, as Mailchimp writes it ("2026-01-05T10:00:00+00:00")."""
    tz = timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(int(epoch_seconds), tz).isoformat()


def epoch_of(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class ResponseRates:
    """Probabilities behind the generated response; defaults are typical of B2B newsletters."""

    hard_bounce: float = 0.005
    soft_bounce: float = 0.010
    bounce_event_share: float = 0.6  # share of bounced recipients that also have a bounce event
    privacy_proxy_open: float = 0.10  # Apple Mail Privacy Protection: "opens" within a minute of delivery
    human_open: float = 0.22
    click_given_open: float = 0.12
    unsubscribe: float = 0.003
    forward: float = 0.001
    abuse_report: float = 0.0002
    lower_case_in_activity: float = 0.35
    alternative_offset: float = 0.03
    automation_share: float = 0.12  # audience share that enters the welcome automation
    # Clickers whose first click is recorded twice in the same second (a double click): Mailchimp counts both.
    same_second_repeat_click: float = 0.0


@dataclass(frozen=True)
class CampaignSpec:
    """One sent (or draft) campaign or automation email of the sandbox account."""

    campaign_id: str
    kind: str  # "regular" | "automation"
    slot: str  # stable generator slot, e.g. "r3" or "a0e1"
    title: str
    subject_line: str
    status: str  # "sent", "sending" (automation), "save" (draft)
    send_time: int  # epoch seconds; automation: approximate (the email's start)
    create_time: int
    segment_share: float  # share of the audience a regular campaign goes to
    urls: tuple[str, ...]
    workflow_id: str | None = None
    position: int = 0  # automation email position in its workflow (1-based)
    # Mailchimp's type of a regular-kind send: regular, plaintext, absplit, variate, or rss (one send of an RSS campaign).
    campaign_type: str = "regular"
    parent_campaign_id: str | None = None  # the RSS campaign a send belongs to

    @property
    def is_automation(self) -> bool:
        return self.kind == "automation"

    @property
    def mailchimp_type(self) -> str:
        """The type /campaigns writes (the /reports spellings differ: see report_type)."""
        return "automation" if self.is_automation else self.campaign_type

    @property
    def report_type(self) -> str:
        # /reports documents its own spellings: plain-text, ab_split.
        return {"plaintext": "plain-text", "absplit": "ab_split"}.get(self.mailchimp_type, self.mailchimp_type)


@dataclass
class GeneratedPage:
    """Generated data for an array of members of one campaign (recipients and all their events)."""

    members: np.ndarray  # member indices
    status: np.ndarray  # STATUS_* per member
    send_at: np.ndarray  # epoch seconds per member (automation: the real per-member send)
    lower_in_activity: np.ndarray  # bool: email-activity writes the address lower-cased
    alt_offset: np.ndarray  # bool: activity timestamps written with +02:00
    ip_seed: np.ndarray  # uint64 per member for fake IPs
    unsubscribe_reason: np.ndarray  # index into UNSUBSCRIBE_REASONS
    ev_row: np.ndarray  # events: index into members
    ev_action: np.ndarray
    ev_ts: np.ndarray
    ev_url: np.ndarray  # index into spec.urls, -1 when not a click
    ev_bounce: np.ndarray  # STATUS_SOFT/STATUS_HARD for bounces, -1 otherwise
    ev_proxy: np.ndarray  # bool: a privacy-proxy (bot) open, dropped by `filter_bots`

    def visible(self, now: int, since: int | None = None, filter_bots: bool = False) -> np.ndarray:
        mask = self.ev_ts <= now
        if since is not None:
            mask &= self.ev_ts > since
        if filter_bots:
            mask &= ~self.ev_proxy
        return mask
