"""Deterministic synthetic Mailchimp account (audience, campaigns, automation emails, response) behind the sandbox API.

Everything a member does in a campaign is derived from a hash of (seed, campaign, member index), so any page of
any campaign can be generated on its own: a 1,000,000-recipient campaign is served page by page and its report is
aggregated chunk by chunk, never held whole in memory.

Behaviour the Mailchimp client and reconciliation rely on (deliberate, documented here once):

* The sandbox has a clock (``now``). A campaign's events exist from the start but are *visible* only once their
  timestamp is at or before ``now``; ``simulate_late_activity`` advances the clock, so activity keeps arriving for
  weeks after a send, exactly as in Mailchimp. Automation recipients appear in sent-to once their trigger fired.
* ``/reports/{id}/email-activity`` lists every visible recipient (members with no activity carry ``activity: []``);
  with ``since`` it lists only members with an activity after ``since`` and only those activities.
* Bounce events exist only for recipients whose sent-to status is ``hard``/``soft`` and only for about 60% of
  them: the rest must be inferred from sent-to (design section 2).
* Report totals equal what the valid events say: ``opens_total``/``unique_opens`` count open events,
  ``clicks_total`` click events, ``unique_clicks`` distinct (member, url) pairs, ``unique_subscriber_clicks``
  distinct clickers, ``hard_bounces``/``soft_bounces`` sent-to statuses, ``unsubscribed`` the unsubscribe list,
  rates are over delivered (``emails_sent`` minus bounces). Forwards and abuse reports exist only as totals.
* Malformed records, excluded from truth and from report totals, listed by ``malformed_records``: an activity
  entry with an unparsable timestamp (served only without ``since``), an activity entry without ``action``, and
  an extra email-activity member entry with an empty ``email_address``/``email_id`` listed after all recipients.
* A member's address may be written with different case in different places: sent-to and unsubscribed use the
  audience spelling (sometimes mixed case, sometimes unicode), email-activity lower-cases it for a share of
  members. ``email_id`` is always md5 of the stripped, lower-cased address. A few members' activity timestamps are
  written with a ``+02:00`` offset instead of ``+00:00`` (same instant).
* ``filter_bots=true`` on email-activity leaves out the privacy-proxy opens; the report's ``proxy_excluded_*``
  figures count the same way.
* ``simulate_member_deletion`` removes a member from sent-to, email-activity and unsubscribed (Mailchimp deletes a
  member's activity), while report totals keep counting them, as Mailchimp's do: the one documented drift.
* State shared between processes (clock, extra sends, deletions, anchor) lives in a small JSON file when
  ``state_path`` is given, so every Dagster run process sees the same sandbox. ``follow_wall_clock=True`` makes the
  clock the real time (plus simulated hours), anchored at creation, for people running ``dagster dev``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

DEFAULT_ANCHOR = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
DAY_SECONDS = 86_400
HOUR_SECONDS = 3_600

ACTION_OPEN, ACTION_CLICK, ACTION_BOUNCE, ACTION_UNSUBSCRIBE = 0, 1, 2, 3
ACTION_NAMES = np.array(["open", "click", "bounce", "unsubscribe"], dtype=object)
STATUS_SENT, STATUS_SOFT, STATUS_HARD = 0, 1, 2
STATUS_NAMES = np.array(["sent", "soft", "hard"], dtype=object)

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

UNPARSABLE_TIMESTAMP = "2026-02-30T25:61:00+00:00"
# Chunk size for whole-campaign scans (report totals, `since` filters, truth): bounds memory on huge campaigns.
SCAN_CHUNK = 65_536

_FIRST_NAMES = [
    "Anna", "Ben", "Chloé", "David", "Emma", "Félix", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Liam",
    "Maja", "Noah", "Olga", "Pablo", "Quinn", "Renée", "Søren", "Tomás", "Ursula", "Vera", "Will", "Zoë",
    "Łukasz", "Åsa", "José", "Mei", "Priya", "Yusuf",
]  # fmt: skip
_LAST_NAMES = [
    "Smith", "Müller", "García", "Novak", "Kowalski", "Jensen", "Rossi", "Dubois", "Silva", "Nguyen",
    "Okafor", "Tanaka", "Çelik", "Andersson", "O'Brien", "Schmidt", "Fernández", "Brown", "Wilson", "Kim",
]  # fmt: skip
_DOMAINS = [
    "example.com", "example.org", "mail.example.net", "Example.co.uk", "corp.example.com", "example.de",
    "postfach.example", "EXAMPLE.io",
]  # fmt: skip
_URL_PATHS = [
    "https://shop.example.com/spring-sale?utm_source=mailchimp&utm_campaign={slug}",
    "https://www.example.com/blog/{slug}",
    "https://www.example.com/webinar/register?id={slug}",
    "https://shop.example.com/product/42?ref={slug}",
    "https://www.example.com/preferences#{slug}",
]
_UNSUBSCRIBE_REASONS = [
    "N/A (Unsubscribed from list)",
    "I no longer want to receive these emails",
    "I never signed up for this mailing list",
    "The emails are inappropriate",
    "The emails are spam and should be reported",
]
_SUBJECTS = [
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


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic is intended)."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _key(*parts: object) -> int:
    """A stable 64-bit key from any parts (seed, campaign slot, purpose)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _hex_id(*parts: object, length: int = 10) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:length]


def _uniforms(key: int, members: np.ndarray, n_streams: int) -> np.ndarray:
    """(n_streams, len(members)) uniforms in [0, 1), a pure function of key, member index and stream number."""
    base = _mix64(members.astype(np.uint64) ^ np.uint64(key))
    streams = np.arange(1, n_streams + 1, dtype=np.uint64)[:, None] * _GOLDEN
    return (_mix64(base[None, :] + streams) >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def email_id_of(address: str) -> str:
    """Mailchimp's subscriber hash: md5 of the stripped, lower-cased address."""
    return hashlib.md5(address.strip().lower().encode("utf-8")).hexdigest()


def format_timestamp(epoch_seconds: int, offset_hours: int = 0) -> str:
    """ISO 8601 with an explicit offset, as Mailchimp writes it ("2026-01-05T10:00:00+00:00")."""
    tz = timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(int(epoch_seconds), tz).isoformat()


def _epoch(moment: datetime) -> int:
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

    @property
    def is_automation(self) -> bool:
        return self.kind == "automation"


@dataclass
class _Page:
    """Generated data for an array of members of one campaign (recipients and all their events)."""

    members: np.ndarray  # member indices
    status: np.ndarray  # STATUS_* per member
    send_at: np.ndarray  # epoch seconds per member (automation: the real per-member send)
    lower_in_activity: np.ndarray  # bool: email-activity writes the address lower-cased
    alt_offset: np.ndarray  # bool: activity timestamps written with +02:00
    ip_seed: np.ndarray  # uint64 per member for fake IPs
    unsubscribe_reason: np.ndarray  # index into _UNSUBSCRIBE_REASONS
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


@dataclass
class _SharedState:
    anchor: int
    clock_seconds: int = 0
    extra_send_times: list[int] = field(default_factory=list)
    follow_wall_clock: bool = False
    deleted_members: list[int] = field(default_factory=list)

    @property
    def now(self) -> int:
        base = int(time.time()) if self.follow_wall_clock else self.anchor
        return base + self.clock_seconds


class SandboxAccount:
    """A seeded, synthetic Mailchimp account: one audience, regular campaigns, a welcome automation."""

    def __init__(
        self,
        seed: int = 7,
        n_members: int = 2_000,
        n_regular_campaigns: int = 4,
        n_automation_emails: int = 2,
        *,
        anchor: datetime | None = None,
        state_path: Path | str | None = None,
        follow_wall_clock: bool = False,
        include_malformed: bool = True,
        include_draft: bool = True,
        rates: ResponseRates = ResponseRates(),
        data_center: str = "us21",
    ) -> None:
        if n_members < 1:
            raise ValueError(f"n_members must be at least 1, got {n_members}")
        if anchor is not None and anchor.tzinfo is None:
            raise ValueError("anchor must be timezone-aware (UTC)")
        self._init_kwargs: dict[str, Any] = {
            "seed": seed,
            "n_members": n_members,
            "n_regular_campaigns": n_regular_campaigns,
            "n_automation_emails": n_automation_emails,
            "anchor": anchor,
            "follow_wall_clock": follow_wall_clock,
            "include_malformed": include_malformed,
            "include_draft": include_draft,
            "rates": rates,
            "data_center": data_center,
        }
        if anchor is None:
            # A wall-clock sandbox is anchored at its creation hour, so its campaigns look recent to a real sensor.
            anchor = (
                datetime.now(UTC).replace(minute=0, second=0, microsecond=0) if follow_wall_clock else DEFAULT_ANCHOR
            )
        self.seed = seed
        self.n_members = n_members
        self.n_regular_campaigns = n_regular_campaigns
        self.n_automation_emails = n_automation_emails
        self.include_malformed = include_malformed
        self.include_draft = include_draft
        self.rates = rates
        self.list_id = _hex_id(seed, "list")
        self.workflow_id = _hex_id(seed, "workflow")
        self.api_key = f"sandbox{_hex_id(seed, 'key', length=25)}-{data_center}"
        self.state_path = Path(state_path) if state_path is not None else None
        self._lock = threading.Lock()
        self._cache: dict[tuple, Any] = {}
        self._memory_state = _SharedState(anchor=_epoch(anchor), follow_wall_clock=follow_wall_clock)
        if self.state_path is not None:
            self._init_state_file()
        self.workflow_start = self._state().anchor - 21 * DAY_SECONDS

    # ------------------------------------------------------------------ shared state (clock, extra sends)

    def _init_state_file(self) -> None:
        assert self.state_path is not None
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with self._state_file_lock():
            if self.state_path.exists():
                stored = json.loads(self.state_path.read_text())
                if stored.get("seed") != self.seed:
                    raise ValueError(
                        f"sandbox state file {self.state_path} belongs to seed {stored.get('seed')}, "
                        f"not {self.seed}: delete it or pass another state_path"
                    )
            else:
                self._write_state(self._memory_state)

    def _state_file_lock(self):
        assert self.state_path is not None
        return _FileLock(self.state_path.with_name(self.state_path.name + ".lock"))

    def _state(self) -> _SharedState:
        if self.state_path is None:
            return self._memory_state
        stored = json.loads(self.state_path.read_text())
        return _SharedState(
            anchor=_epoch(datetime.fromisoformat(stored["anchor"])),
            clock_seconds=int(stored["clock_seconds"]),
            extra_send_times=[int(t) for t in stored["extra_send_times"]],
            follow_wall_clock=bool(stored.get("follow_wall_clock", False)),
            deleted_members=[int(m) for m in stored.get("deleted_members", [])],
        )

    def _write_state(self, state: _SharedState) -> None:
        if self.state_path is None:
            self._memory_state = state
            return
        payload = {
            "seed": self.seed,
            "anchor": format_timestamp(state.anchor),
            "clock_seconds": state.clock_seconds,
            "extra_send_times": state.extra_send_times,
            "follow_wall_clock": state.follow_wall_clock,
            "deleted_members": state.deleted_members,
        }
        # Write then rename, so a reader in another process never sees half a file.
        tmp = self.state_path.with_name(f"{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(self.state_path)

    def _update_state(self, change) -> _SharedState:
        with self._lock:
            if self.state_path is None:
                state = self._state()
                change(state)
                self._write_state(state)
                return state
            with self._state_file_lock():
                state = self._state()
                change(state)
                self._write_state(state)
                return state

    @property
    def now_epoch(self) -> int:
        return self._state().now

    def with_state_path(self, state_path: Path | str) -> SandboxAccount:
        """The same account, sharing its clock and sends with other processes through `state_path`."""
        return SandboxAccount(**self._init_kwargs, state_path=state_path)

    @property
    def now(self) -> datetime:
        """The sandbox clock (UTC)."""
        return datetime.fromtimestamp(self.now_epoch, UTC)

    # ------------------------------------------------------------------ campaigns

    def _regular_spec(self, index: int, send_time: int) -> CampaignSpec:
        slot = f"r{index}"
        subject = _SUBJECTS[index % len(_SUBJECTS)]
        slug = f"c{index}"
        n_urls = 3 + index % 3
        return CampaignSpec(
            campaign_id=_hex_id(self.seed, slot),
            kind="regular",
            slot=slot,
            title=f"Newsletter #{index + 1}: {subject}",
            subject_line=subject,
            status="sent",
            send_time=send_time,
            create_time=send_time - 2 * DAY_SECONDS,
            segment_share=1.0 if index % 2 == 0 else 0.6,
            urls=tuple(p.format(slug=slug) for p in _URL_PATHS[:n_urls]),
        )

    def campaign_specs(self, include_unsent: bool = False) -> list[CampaignSpec]:
        """Every campaign and automation email that exists now, oldest send first."""
        state = self._state()
        now = state.now
        specs: list[CampaignSpec] = []
        for index in range(self.n_regular_campaigns):
            age_days = 2 + 7 * (self.n_regular_campaigns - 1 - index)
            jitter = _key(self.seed, "send-minute", index) % 50 * 60
            specs.append(self._regular_spec(index, state.anchor - age_days * DAY_SECONDS - jitter))
        for extra, send_time in enumerate(state.extra_send_times):
            specs.append(self._regular_spec(self.n_regular_campaigns + extra, send_time))
        for position in range(1, self.n_automation_emails + 1):
            slot = f"a0e{position}"
            start = self.workflow_start + (position - 1) * 3 * DAY_SECONDS
            if start > now:
                continue
            specs.append(
                CampaignSpec(
                    campaign_id=_hex_id(self.seed, slot),
                    kind="automation",
                    slot=slot,
                    title=f"Welcome series — email {position}",
                    subject_line=["Welcome aboard!", "Getting started", "Tips from the team"][(position - 1) % 3],
                    status="sending",
                    send_time=start,
                    create_time=self.workflow_start - 5 * DAY_SECONDS,
                    segment_share=1.0,
                    urls=tuple(p.format(slug=slot) for p in _URL_PATHS[:3]),
                    workflow_id=self.workflow_id,
                    position=position,
                )
            )
        specs.sort(key=lambda s: (s.send_time, s.campaign_id))
        if include_unsent and self.include_draft:
            # A fixed slot far beyond any extra send keeps the draft's id stable as sends are simulated.
            draft = self._regular_spec(100_000, 0)
            specs.append(
                replace(
                    draft,
                    status="save",
                    create_time=now - DAY_SECONDS,
                    title="Draft: next month's newsletter",
                )
            )
        return specs

    def campaign_ids(self, include_unsent: bool = False) -> list[str]:
        """Ids of the campaigns and automation emails sent by now (plus drafts when asked), oldest first."""
        return [s.campaign_id for s in self.campaign_specs(include_unsent=include_unsent)]

    def spec(self, campaign_id: str, include_unsent: bool = True) -> CampaignSpec | None:
        for candidate in self.campaign_specs(include_unsent=include_unsent):
            if candidate.campaign_id == campaign_id:
                return candidate
        return None

    def _require_sent(self, campaign_id: str) -> CampaignSpec:
        found = self.spec(campaign_id, include_unsent=False)
        if found is None:
            raise KeyError(f"campaign {campaign_id!r} is not a sent campaign of sandbox seed {self.seed}")
        return found

    # ------------------------------------------------------------------ audience

    def member_addresses(self, members: np.ndarray) -> list[str]:
        """The audience spelling of each member's address (mixed case and unicode for some)."""
        hashes = _mix64(members.astype(np.uint64) ^ np.uint64(_key(self.seed, "address")))
        addresses = []
        for member, h in zip(members.tolist(), hashes.tolist(), strict=True):
            first = _FIRST_NAMES[h % len(_FIRST_NAMES)]
            last = _LAST_NAMES[(h >> 8) % len(_LAST_NAMES)].replace("'", "")
            domain = _DOMAINS[(h >> 16) % len(_DOMAINS)]
            style = (h >> 24) % 4
            if style == 0:
                local = f"{first}.{last}{member}"
            elif style == 1:
                local = f"{first[0]}{last}{member}"
            elif style == 2:
                local = f"{first}_{member}"
            else:
                local = f"{last}.{first}.{member}"
            # A quarter of the audience keeps the capitals they typed at sign-up.
            if (h >> 32) % 4 != 0:
                local = local.lower()
            addresses.append(f"{local}@{domain}")
        return addresses

    def member_names(self, members: np.ndarray) -> list[tuple[str, str]]:
        hashes = _mix64(members.astype(np.uint64) ^ np.uint64(_key(self.seed, "address")))
        return [
            (_FIRST_NAMES[h % len(_FIRST_NAMES)], _LAST_NAMES[(h >> 8) % len(_LAST_NAMES)]) for h in hashes.tolist()
        ]

    def audience_emails(self) -> list[str]:
        """Every member address of the audience, as the audience spells it."""
        out: list[str] = []
        for start in range(0, self.n_members, SCAN_CHUNK):
            out.extend(self.member_addresses(np.arange(start, min(start + SCAN_CHUNK, self.n_members))))
        return out

    # ------------------------------------------------------------------ recipients

    def _potential_recipients(self, spec: CampaignSpec) -> range | np.ndarray:
        """Member indices the campaign goes to, ascending (automation: everyone who will ever enter the workflow)."""
        if not spec.is_automation and spec.segment_share >= 1.0:
            return range(self.n_members)
        cache_key = ("potential", spec.slot)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        if spec.is_automation:
            share, key = self.rates.automation_share, _key(self.seed, "workflow-member")
        else:
            share, key = spec.segment_share, _key(self.seed, "segment", spec.slot)
        parts = []
        for start in range(0, self.n_members, SCAN_CHUNK):
            members = np.arange(start, min(start + SCAN_CHUNK, self.n_members), dtype=np.int64)
            parts.append(members[_uniforms(key, members, 1)[0] < share])
        result = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        self._cache[cache_key] = result
        return result

    def _automation_send_times(self, spec: CampaignSpec, members: np.ndarray) -> np.ndarray:
        """When each member really received an automation email: trigger (within 30 days) + 3 days per position."""
        trigger = self.workflow_start + (
            _uniforms(_key(self.seed, "workflow-trigger"), members, 1)[0] * 30 * DAY_SECONDS
        ).astype(np.int64)
        return trigger + (spec.position - 1) * 3 * DAY_SECONDS

    def visible_recipients(self, spec: CampaignSpec, now: int, include_deleted: bool = False) -> range | np.ndarray:
        """Member indices (ascending) that sent-to lists at `now`; a range when it is the whole audience.

        Deleted members vanish from every listing, as in Mailchimp; `include_deleted` is for report totals,
        which Mailchimp keeps counting.
        """
        recipients = self._sent_recipients(spec, now)
        deleted = [] if include_deleted else self._state().deleted_members
        if not deleted:
            return recipients
        cache_key = ("alive", spec.slot, now, len(deleted))
        alive: np.ndarray | None = self._cache.get(cache_key)
        if alive is None:
            alive = np.setdiff1d(np.asarray(recipients, dtype=np.int64), np.asarray(deleted, dtype=np.int64))
            self._remember(cache_key, alive)
        return alive

    def _deletions(self) -> int:
        """How many members were deleted so far: part of every cache key that depends on listings."""
        return len(self._state().deleted_members)

    def _sent_recipients(self, spec: CampaignSpec, now: int) -> range | np.ndarray:
        potential = self._potential_recipients(spec)
        if not spec.is_automation:
            return potential
        cache_key = ("visible", spec.slot, now)
        cached: np.ndarray | None = self._cache.get(cache_key)
        if cached is None:
            workflow_members = np.asarray(potential, dtype=np.int64)
            cached = workflow_members[self._automation_send_times(spec, workflow_members) <= now]
            self._remember(cache_key, cached)
        return cached

    def _remember(self, cache_key: tuple, value: Any) -> None:
        # Per-clock caches are small; drop them when they pile up so a long-running server stays bounded.
        with self._lock:
            if len(self._cache) > 256:
                for stale in [k for k in self._cache if k[0] != "potential"]:
                    self._cache.pop(stale, None)
            self._cache[cache_key] = value

    # ------------------------------------------------------------------ generation

    def generate(self, spec: CampaignSpec, members: np.ndarray) -> _Page:
        """All recipient data and events (visible or not yet) of `members` in `spec`, vectorised."""
        members = np.asarray(members, dtype=np.int64)
        rates = self.rates
        u = _uniforms(_key(self.seed, "response", spec.slot), members, 26)
        n = len(members)

        status = np.full(n, STATUS_SENT, dtype=np.int8)
        status[u[0] < rates.hard_bounce + rates.soft_bounce] = STATUS_SOFT
        status[u[0] < rates.hard_bounce] = STATUS_HARD
        delivered = status == STATUS_SENT
        if spec.is_automation:
            send_at = self._automation_send_times(spec, members)
        else:
            send_at = np.full(n, spec.send_time, dtype=np.int64)

        rows: list[np.ndarray] = []
        actions: list[int] = []
        stamps: list[np.ndarray] = []
        urls: list[np.ndarray] = []
        proxies: list[bool] = []

        def add(
            mask: np.ndarray, action: int, ts: np.ndarray, url: np.ndarray | None = None, proxy: bool = False
        ) -> None:
            idx = np.flatnonzero(mask)
            proxies.append(proxy)
            rows.append(idx)
            actions.append(action)
            stamps.append(ts[idx].astype(np.int64))
            urls.append(url[idx].astype(np.int16) if url is not None else np.full(len(idx), -1, np.int16))

        # Privacy-proxy opens: the mail provider fetches the pixel within a minute of delivery.
        add(
            delivered & (u[1] < rates.privacy_proxy_open),
            ACTION_OPEN,
            send_at + 1 + (u[2] * 59).astype(np.int64),
            proxy=True,
        )
        # Human opens: heavy-tailed delay (most within hours, some weeks later), then 0-4 repeat opens.
        human = delivered & (u[3] < rates.human_open)
        first_open = send_at + 120 + np.minimum(-np.log1p(-u[4]) * 8 * HOUR_SECONDS, 25 * DAY_SECONDS).astype(np.int64)
        add(human, ACTION_OPEN, first_open)
        repeats = (u[5] ** 3 * 5).astype(np.int64)
        for k in range(4):
            gap = 60 + (-np.log1p(-u[6 + k]) * 24 * HOUR_SECONDS).astype(np.int64)
            add(human & (repeats > k), ACTION_OPEN, first_open + gap * (k + 1))
        # Clicks follow a human open, on one to three of the campaign's links.
        clicker = human & (u[10] < rates.click_given_open)
        n_clicks = 1 + (u[11] ** 2 * 3).astype(np.int64)
        for k in range(3):
            url_index = (u[15 + k] * len(spec.urls)).astype(np.int64)
            add(
                clicker & (n_clicks > k),
                ACTION_CLICK,
                first_open + 30 + (u[12 + k] * 2 * HOUR_SECONDS).astype(np.int64),
                url_index,
            )
        # Bounce events only for sent-to hard/soft, and not always (design: infer from sent-to).
        bounced_with_event = (status != STATUS_SENT) & (u[18] < rates.bounce_event_share)
        add(bounced_with_event, ACTION_BOUNCE, send_at + 5 + (u[19] * 600).astype(np.int64))
        add(
            delivered & (u[20] < rates.unsubscribe),
            ACTION_UNSUBSCRIBE,
            send_at + 600 + (u[21] * 3 * DAY_SECONDS).astype(np.int64),
        )

        ev_row = np.concatenate(rows)
        ev_action = np.concatenate([np.full(len(r), a, np.int8) for r, a in zip(rows, actions, strict=True)])
        ev_ts = np.concatenate(stamps)
        ev_url = np.concatenate(urls)
        ev_proxy = np.concatenate([np.full(len(r), p, bool) for r, p in zip(rows, proxies, strict=True)])
        # Member order, then time; identical (member, action, time, url) would be one event in Mailchimp too.
        order = np.lexsort((ev_url, ev_action, ev_ts, ev_row))
        ev_row, ev_action, ev_ts, ev_url, ev_proxy = (a[order] for a in (ev_row, ev_action, ev_ts, ev_url, ev_proxy))
        if len(ev_row) > 1:
            same = (
                (ev_row[1:] == ev_row[:-1])
                & (ev_action[1:] == ev_action[:-1])
                & (ev_ts[1:] == ev_ts[:-1])
                & (ev_url[1:] == ev_url[:-1])
            )
            keep = np.concatenate([[True], ~same])
            ev_row, ev_action, ev_ts, ev_url, ev_proxy = (a[keep] for a in (ev_row, ev_action, ev_ts, ev_url, ev_proxy))
        ev_bounce = np.where(ev_action == ACTION_BOUNCE, status[ev_row], -1).astype(np.int8)

        return _Page(
            members=members,
            status=status,
            send_at=send_at,
            lower_in_activity=u[22] < rates.lower_case_in_activity,
            alt_offset=u[23] < rates.alternative_offset,
            ip_seed=_mix64(members.astype(np.uint64) ^ np.uint64(_key(self.seed, "ip", spec.slot))),
            unsubscribe_reason=(u[24] * len(_UNSUBSCRIBE_REASONS)).astype(np.int64),
            ev_row=ev_row,
            ev_action=ev_action,
            ev_ts=ev_ts,
            ev_url=ev_url,
            ev_bounce=ev_bounce,
            ev_proxy=ev_proxy,
        )

    def _scan(self, spec: CampaignSpec, now: int, include_deleted: bool = False):
        """Yield pages covering every visible recipient of the campaign, chunk by chunk."""
        recipients = self.visible_recipients(spec, now, include_deleted)
        for start in range(0, len(recipients), SCAN_CHUNK):
            yield self.generate(spec, np.asarray(recipients[start : start + SCAN_CHUNK], dtype=np.int64))

    # ------------------------------------------------------------------ malformed records

    def _malformed_plan(self, spec: CampaignSpec) -> dict[str, Any] | None:
        """Which members carry the deliberately malformed records, and when they happen."""
        if not self.include_malformed:
            return None
        potential = self._potential_recipients(spec)
        if len(potential) < 3:
            return None
        return {
            "bad_timestamp_member": int(potential[len(potential) // 3]),
            "missing_action_member": int(potential[(2 * len(potential)) // 3]),
            "missing_action_at": spec.send_time + 2 * HOUR_SECONDS,
            "empty_email_at": spec.send_time + HOUR_SECONDS,
        }

    # ------------------------------------------------------------------ API-facing views

    def activity_listing(
        self, spec: CampaignSpec, since: int | None, filter_bots: bool = False
    ) -> tuple[range | np.ndarray, bool]:
        """Members email-activity lists (ascending) and whether the empty-address entry is listed after them."""
        now = self.now_epoch
        plan = self._malformed_plan(spec)
        empty_listed = (
            plan is not None and plan["empty_email_at"] <= now and (since is None or plan["empty_email_at"] > since)
        )
        recipients = self.visible_recipients(spec, now)
        if since is None:
            return recipients, empty_listed
        cache_key = ("since", spec.slot, now, since, filter_bots, self._deletions())
        listed = self._cache.get(cache_key)
        if listed is None:
            parts = []
            for page in self._scan(spec, now):
                visible = page.visible(now, since, filter_bots) & (page.ev_action != ACTION_UNSUBSCRIBE)
                parts.append(page.members[np.unique(page.ev_row[visible])])
            listed = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
            if plan is not None and since < plan["missing_action_at"] <= now:
                member = plan["missing_action_member"]
                if np.isin(member, np.asarray(recipients)).item():
                    listed = np.union1d(listed, [member])
            self._remember(cache_key, listed)
        return listed, empty_listed

    def activity_entries(
        self, spec: CampaignSpec, members: np.ndarray, since: int | None, filter_bots: bool = False
    ) -> list[dict[str, Any]]:
        """email-activity member entries for `members` (already visible recipients), as Mailchimp writes them."""
        now = self.now_epoch
        page = self.generate(spec, members)
        addresses = self.member_addresses(page.members)
        visible = page.visible(now, since, filter_bots) & (page.ev_action != ACTION_UNSUBSCRIBE)
        plan = self._malformed_plan(spec)
        entries = []
        per_member: list[list[dict[str, Any]]] = [[] for _ in range(len(page.members))]
        for row, action, ts, url, bounce, proxy in zip(
            page.ev_row[visible].tolist(),
            page.ev_action[visible].tolist(),
            page.ev_ts[visible].tolist(),
            page.ev_url[visible].tolist(),
            page.ev_bounce[visible].tolist(),
            page.ev_proxy[visible].tolist(),
            strict=True,
        ):
            item: dict[str, Any] = {
                "action": ACTION_NAMES[action],
                "timestamp": format_timestamp(ts, 2 if page.alt_offset[row] else 0),
                "ip": self._ip(page, row, proxy),
            }
            if action == ACTION_CLICK:
                item["url"] = spec.urls[url]
            if action == ACTION_BOUNCE:
                item["type"] = STATUS_NAMES[bounce]
            per_member[row].append(item)
        for row, member in enumerate(page.members.tolist()):
            activity = per_member[row]
            if plan is not None and member == plan["bad_timestamp_member"] and since is None:
                activity.append({"action": "open", "timestamp": UNPARSABLE_TIMESTAMP, "ip": self._ip(page, row, False)})
            if plan is not None and member == plan["missing_action_member"]:
                at = plan["missing_action_at"]
                if at <= now and (since is None or at > since):
                    activity.append({"timestamp": format_timestamp(at), "ip": self._ip(page, row, False)})
            address = addresses[row].lower() if page.lower_in_activity[row] else addresses[row]
            entries.append(
                {
                    "campaign_id": spec.campaign_id,
                    "list_id": self.list_id,
                    "list_is_active": True,
                    "email_id": email_id_of(address),
                    "email_address": address,
                    "activity": activity,
                    "_links": [],
                }
            )
        return entries

    def empty_email_entry(self, spec: CampaignSpec) -> dict[str, Any]:
        plan = self._malformed_plan(spec)
        assert plan is not None
        return {
            "campaign_id": spec.campaign_id,
            "list_id": self.list_id,
            "list_is_active": True,
            "email_id": "",
            "email_address": "",
            "activity": [{"action": "open", "timestamp": format_timestamp(plan["empty_email_at"]), "ip": "17.58.0.1"}],
            "_links": [],
        }

    @staticmethod
    def _ip(page: _Page, row: int, proxy: bool) -> str:
        h = int(page.ip_seed[row])
        if proxy:
            # Apple's privacy proxy fetches from its own 17.0.0.0/8 range.
            return f"17.{(h >> 8) & 255}.{(h >> 16) & 255}.{(h >> 24) & 255}"
        return f"{(h >> 8) % 223 + 1}.{(h >> 16) & 255}.{(h >> 24) & 255}.{(h >> 32) % 254 + 1}"

    def sent_to_entries(self, spec: CampaignSpec, members: np.ndarray) -> list[dict[str, Any]]:
        now = self.now_epoch
        page = self.generate(spec, members)
        addresses = self.member_addresses(page.members)
        names = self.member_names(page.members)
        opens = page.visible(now) & (page.ev_action == ACTION_OPEN)
        open_count = np.bincount(page.ev_row[opens], minlength=len(page.members))
        last_open = np.full(len(page.members), -1, dtype=np.int64)
        np.maximum.at(last_open, page.ev_row[opens], page.ev_ts[opens])
        return [
            {
                "email_id": email_id_of(addresses[row]),
                "email_address": addresses[row],
                "merge_fields": {"FNAME": names[row][0], "LNAME": names[row][1]},
                "vip": False,
                "status": STATUS_NAMES[page.status[row]],
                "open_count": int(open_count[row]),
                "last_open": format_timestamp(last_open[row]) if last_open[row] >= 0 else "",
                "absplit_group": "",
                "gmt_offset": 0,
                "campaign_id": spec.campaign_id,
                "list_id": self.list_id,
                "list_is_active": True,
                "_links": [],
            }
            for row in range(len(page.members))
        ]

    def unsubscribed_listing(self, spec: CampaignSpec) -> list[dict[str, Any]]:
        """All visible unsubscribes of the campaign, in member order (small: ~0.3% of recipients)."""
        now = self.now_epoch
        cache_key = ("unsubscribed", spec.slot, now, self._deletions())
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        out = []
        for page in self._scan(spec, now):
            mask = page.visible(now) & (page.ev_action == ACTION_UNSUBSCRIBE)
            rows = page.ev_row[mask]
            addresses = self.member_addresses(page.members[rows])
            for address, row, ts in zip(addresses, rows.tolist(), page.ev_ts[mask].tolist(), strict=True):
                out.append(
                    {
                        "email_id": email_id_of(address),
                        "email_address": address,
                        "merge_fields": {},
                        "vip": False,
                        "timestamp": format_timestamp(ts),
                        "reason": _UNSUBSCRIBE_REASONS[int(page.unsubscribe_reason[row])],
                        "campaign_id": spec.campaign_id,
                        "list_id": self.list_id,
                        "list_is_active": True,
                        "_links": [],
                    }
                )
        self._remember(cache_key, out)
        return out

    def report_totals(self, spec: CampaignSpec) -> dict[str, Any]:
        """Mailchimp's campaign report numbers, aggregated chunk by chunk from the valid visible data."""
        now = self.now_epoch
        cache_key = ("report", spec.slot, now)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        totals: dict[str, Any] = dict.fromkeys(
            ["emails_sent", "hard", "soft", "unsubscribed", "opens_total", "unique_opens", "clicks_total",
             "unique_clicks", "unique_subscriber_clicks", "proxy_excluded_opens", "proxy_excluded_unique_opens"],
            0,
        )  # fmt: skip
        last_open, last_click = -1, -1
        # Mailchimp's report keeps counting members deleted since the send; so does the sandbox's.
        for page in self._scan(spec, now, include_deleted=True):
            visible = page.visible(now)
            totals["emails_sent"] += len(page.members)
            totals["hard"] += int((page.status == STATUS_HARD).sum())
            totals["soft"] += int((page.status == STATUS_SOFT).sum())
            totals["unsubscribed"] += int((visible & (page.ev_action == ACTION_UNSUBSCRIBE)).sum())
            opens = visible & (page.ev_action == ACTION_OPEN)
            clicks = visible & (page.ev_action == ACTION_CLICK)
            totals["opens_total"] += int(opens.sum())
            totals["unique_opens"] += len(np.unique(page.ev_row[opens]))
            human_opens = opens & ~page.ev_proxy
            totals["proxy_excluded_opens"] += int(human_opens.sum())
            totals["proxy_excluded_unique_opens"] += len(np.unique(page.ev_row[human_opens]))
            totals["clicks_total"] += int(clicks.sum())
            totals["unique_subscriber_clicks"] += len(np.unique(page.ev_row[clicks]))
            pairs = page.ev_row[clicks].astype(np.int64) * 64 + page.ev_url[clicks]
            totals["unique_clicks"] += len(np.unique(pairs))
            if opens.any():
                last_open = max(last_open, int(page.ev_ts[opens].max()))
            if clicks.any():
                last_click = max(last_click, int(page.ev_ts[clicks].max()))
        delivered = totals["emails_sent"] - totals["hard"] - totals["soft"]
        u = _uniforms(_key(self.seed, "report-extras", spec.slot), np.arange(3), 1)[0]
        forwards = int(round(delivered * self.rates.forward * (0.5 + u[0])))
        totals.update(
            delivered=delivered,
            forwards_count=forwards,
            forwards_opens=int(round(forwards * (0.8 + u[1]))),
            abuse_reports=int(round(delivered * self.rates.abuse_report * (0.5 + u[2]))),
            open_rate=totals["unique_opens"] / delivered if delivered else 0.0,
            proxy_excluded_open_rate=totals["proxy_excluded_unique_opens"] / delivered if delivered else 0.0,
            click_rate=totals["unique_subscriber_clicks"] / delivered if delivered else 0.0,
            last_open=format_timestamp(last_open) if last_open >= 0 else "",
            last_click=format_timestamp(last_click) if last_click >= 0 else "",
        )
        self._remember(cache_key, totals)
        return totals

    # ------------------------------------------------------------------ truth (what the API serves, as frames)

    def truth_events(self, campaign_id: str, filter_bots: bool = False) -> pd.DataFrame:
        """Every valid event the API serves now (email-activity + unsubscribed), one row each, in frames.md columns.

        With `filter_bots`, what email-activity serves with ``filter_bots=true``: no privacy-proxy opens.
        """
        spec = self._require_sent(campaign_id)
        now = self.now_epoch
        frames = []
        for page in self._scan(spec, now):
            mask = page.visible(now, filter_bots=filter_bots)
            rows = page.ev_row[mask]
            action = page.ev_action[mask]
            addresses = np.array(self.member_addresses(page.members), dtype=object)
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

    def truth_recipients(self, campaign_id: str) -> pd.DataFrame:
        """The campaign_recipients frame (docs/frames.md) the API's sent-to implies now."""
        spec = self._require_sent(campaign_id)
        now = self.now_epoch
        frames = []
        for page in self._scan(spec, now):
            addresses = self.member_addresses(page.members)
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

    def malformed_records(self, campaign_id: str) -> pd.DataFrame:
        """The deliberately malformed records the API serves now (full fetch, no `since`), with the reason."""
        spec = self._require_sent(campaign_id)
        plan = self._malformed_plan(spec)
        now = self.now_epoch
        rows: list[dict[str, Any]] = []
        if plan is not None:
            recipients = np.asarray(self.visible_recipients(spec, now))
            for member, reason, wanted in (
                (plan["bad_timestamp_member"], "unparsable timestamp", True),
                (plan["missing_action_member"], "missing action", plan["missing_action_at"] <= now),
            ):
                if not wanted or not np.isin(member, recipients).item():
                    continue
                entry = self.activity_entries(spec, np.array([member]), None)[0]
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
                entry = self.empty_email_entry(spec)
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

    # ------------------------------------------------------------------ simulation

    def simulate_new_send(self) -> str:
        """Send one more regular campaign (an hour ago on the sandbox clock, so some response is visible)."""
        state = self._update_state(lambda s: s.extra_send_times.append(s.now - HOUR_SECONDS))
        return self._regular_spec(
            self.n_regular_campaigns + len(state.extra_send_times) - 1, state.extra_send_times[-1]
        ).campaign_id

    def simulate_member_deletion(self, email_address: str) -> int:
        """Delete a member from the audience: Mailchimp then drops their sent-to rows and activity everywhere.

        Report totals keep counting them (as Mailchimp's do); returns the member's index.
        """
        wanted = email_address.strip().lower()
        for start in range(0, self.n_members, SCAN_CHUNK):
            members = np.arange(start, min(start + SCAN_CHUNK, self.n_members))
            for member, address in zip(members.tolist(), self.member_addresses(members), strict=True):
                if address.lower() == wanted:
                    self._update_state(
                        lambda s, m=member: None if m in s.deleted_members else s.deleted_members.append(m)
                    )
                    return member
        raise KeyError(f"{email_address!r} is not a member of sandbox audience {self.list_id}")

    def simulate_late_activity(self, hours: float = 48) -> int:
        """Advance the sandbox clock; returns how many valid events (all campaigns) became visible."""
        if hours <= 0:
            raise ValueError(f"hours must be positive, got {hours}")
        before = self.now_epoch
        state = self._update_state(lambda s: setattr(s, "clock_seconds", s.clock_seconds + int(hours * HOUR_SECONDS)))
        after = state.now
        # Count by chunked scans rather than truth frames, so a million-recipient account can move its clock too.
        appeared = 0
        for spec in self.campaign_specs():
            for page in self._scan(spec, after):
                appeared += int(((page.ev_ts > before) & (page.ev_ts <= after)).sum())
        return appeared


class _FileLock:
    """An exclusive advisory lock on a side file, so processes sharing a state file update it one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def __enter__(self) -> _FileLock:
        handle = open(self.path, "a+")  # held open until __exit__ releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._handle is not None
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
