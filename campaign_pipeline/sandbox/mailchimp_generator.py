"""The generator of the synthetic Mailchimp account: audience, campaigns, automation emails and everyone's response."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np

from campaign_pipeline.sandbox.mailchimp_model import (
    ACTION_BOUNCE,
    ACTION_CLICK,
    ACTION_OPEN,
    ACTION_UNSUBSCRIBE,
    DAY_SECONDS,
    DEFAULT_ANCHOR,
    DOMAINS,
    FIRST_NAMES,
    HOUR_SECONDS,
    LAST_NAMES,
    SCAN_CHUNK,
    STATUS_HARD,
    STATUS_SENT,
    STATUS_SOFT,
    SUBJECTS,
    UNSUBSCRIBE_REASONS,
    URL_PATHS,
    CampaignSpec,
    GeneratedPage,
    ResponseRates,
    epoch_of,
    hex_id,
    mix64,
    stable_key,
    uniforms,
)
from campaign_pipeline.sandbox.mailchimp_state import AccountState, SharedState


class AccountGenerator:
    """A seeded, synthetic Mailchimp account: one audience, regular campaigns, a welcome automation.

    This part generates; SandboxAccount (mailchimp_data) adds what each API endpoint serves.
    """

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
        every_campaign_type: bool = False,
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
            "every_campaign_type": every_campaign_type,
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
        self.every_campaign_type = every_campaign_type
        self.rss_campaign_id = hex_id(seed, "rss-parent")
        self.rates = rates
        self.list_id = hex_id(seed, "list")
        self.workflow_id = hex_id(seed, "workflow")
        self.api_key = f"sandbox{hex_id(seed, 'key', length=25)}-{data_center}"
        self.state_path = Path(state_path) if state_path is not None else None
        self._lock = threading.Lock()
        self._cache: dict[tuple, Any] = {}
        self._shared = AccountState(
            seed, SharedState(anchor=epoch_of(anchor), follow_wall_clock=follow_wall_clock), self.state_path
        )
        self.workflow_start = self._state().anchor - 21 * DAY_SECONDS

    # ------------------------------------------------------------------ shared state (clock, extra sends)

    def _state(self) -> SharedState:
        return self._shared.read()

    def _update_state(self, change: Callable[[SharedState], object]) -> SharedState:
        return self._shared.update(change)

    @property
    def now_epoch(self) -> int:
        return self._state().now

    def with_state_path(self, state_path: Path | str) -> Self:
        """The same account, sharing its clock and sends with other processes through `state_path`."""
        return type(self)(**self._init_kwargs, state_path=state_path)

    @property
    def now(self) -> datetime:
        """The sandbox clock (UTC)."""
        return datetime.fromtimestamp(self.now_epoch, UTC)

    # ------------------------------------------------------------------ campaigns

    def _regular_spec(self, index: int, send_time: int) -> CampaignSpec:
        slot = f"r{index}"
        subject = SUBJECTS[index % len(SUBJECTS)]
        slug = f"c{index}"
        n_urls = 3 + index % 3
        return CampaignSpec(
            campaign_id=hex_id(self.seed, slot),
            kind="regular",
            slot=slot,
            title=f"Newsletter #{index + 1}: {subject}",
            subject_line=subject,
            status="sent",
            send_time=send_time,
            create_time=send_time - 2 * DAY_SECONDS,
            segment_share=1.0 if index % 2 == 0 else 0.6,
            urls=tuple(p.format(slug=slug) for p in URL_PATHS[:n_urls]),
        )

    def _typed_specs(self, anchor: int) -> list[CampaignSpec]:
        """One send of every other type Mailchimp documents, and two sends of an RSS campaign (one partition each)."""
        typed = [("t", "plaintext"), ("b", "absplit"), ("v", "variate"), ("s0", "rss"), ("s1", "rss")]
        specs = []
        for offset, (slot, campaign_type) in enumerate(typed):
            base = self._regular_spec(200_000 + offset, anchor - (3 + 2 * offset) * DAY_SECONDS - 17 * 60)
            label = {"plaintext": "Plain-text note", "absplit": "A/B split test", "variate": "Multivariate test"}
            title = label.get(campaign_type, f"Blog digest, send {slot[1:]}")
            specs.append(
                replace(
                    base,
                    campaign_id=hex_id(self.seed, "typed", slot),
                    slot=f"x{slot}",
                    title=title,
                    campaign_type=campaign_type,
                    parent_campaign_id=self.rss_campaign_id if campaign_type == "rss" else None,
                )
            )
        return specs

    def campaign_specs(self, include_unsent: bool = False) -> list[CampaignSpec]:
        """Every campaign and automation email that exists now, oldest send first."""
        state = self._state()
        now = state.now
        specs: list[CampaignSpec] = []
        for index in range(self.n_regular_campaigns):
            age_days = 2 + 7 * (self.n_regular_campaigns - 1 - index)
            jitter = stable_key(self.seed, "send-minute", index) % 50 * 60
            specs.append(self._regular_spec(index, state.anchor - age_days * DAY_SECONDS - jitter))
        for extra, send_time in enumerate(state.extra_send_times):
            specs.append(self._regular_spec(self.n_regular_campaigns + extra, send_time))
        if self.every_campaign_type:
            specs.extend(self._typed_specs(state.anchor))
        for position in range(1, self.n_automation_emails + 1):
            slot = f"a0e{position}"
            start = self.workflow_start + (position - 1) * 3 * DAY_SECONDS
            if start > now:
                continue
            specs.append(
                CampaignSpec(
                    campaign_id=hex_id(self.seed, slot),
                    kind="automation",
                    slot=slot,
                    title=f"Welcome series — email {position}",
                    subject_line=["Welcome aboard!", "Getting started", "Tips from the team"][(position - 1) % 3],
                    status="sending",
                    send_time=start,
                    create_time=self.workflow_start - 5 * DAY_SECONDS,
                    segment_share=1.0,
                    urls=tuple(p.format(slug=slot) for p in URL_PATHS[:3]),
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

    def require_sent(self, campaign_id: str) -> CampaignSpec:
        found = self.spec(campaign_id, include_unsent=False)
        if found is None:
            raise KeyError(f"campaign {campaign_id!r} is not a sent campaign of sandbox seed {self.seed}")
        return found

    # ------------------------------------------------------------------ audience

    def member_addresses(self, members: np.ndarray) -> list[str]:
        """The audience spelling of each member's address (mixed case and unicode for some)."""
        hashes = mix64(members.astype(np.uint64) ^ np.uint64(stable_key(self.seed, "address")))
        addresses = []
        for member, h in zip(members.tolist(), hashes.tolist(), strict=True):
            first = FIRST_NAMES[h % len(FIRST_NAMES)]
            last = LAST_NAMES[(h >> 8) % len(LAST_NAMES)].replace("'", "")
            domain = DOMAINS[(h >> 16) % len(DOMAINS)]
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
        hashes = mix64(members.astype(np.uint64) ^ np.uint64(stable_key(self.seed, "address")))
        return [(FIRST_NAMES[h % len(FIRST_NAMES)], LAST_NAMES[(h >> 8) % len(LAST_NAMES)]) for h in hashes.tolist()]

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
            share, key = self.rates.automation_share, stable_key(self.seed, "workflow-member")
        else:
            share, key = spec.segment_share, stable_key(self.seed, "segment", spec.slot)
        parts = []
        for start in range(0, self.n_members, SCAN_CHUNK):
            members = np.arange(start, min(start + SCAN_CHUNK, self.n_members), dtype=np.int64)
            parts.append(members[uniforms(key, members, 1)[0] < share])
        result = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        self._cache[cache_key] = result
        return result

    def _automation_send_times(self, spec: CampaignSpec, members: np.ndarray) -> np.ndarray:
        """When each member really received an automation email: trigger (within 30 days) + 3 days per position."""
        trigger = self.workflow_start + (
            uniforms(stable_key(self.seed, "workflow-trigger"), members, 1)[0] * 30 * DAY_SECONDS
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

    def generate(self, spec: CampaignSpec, members: np.ndarray) -> GeneratedPage:
        """All recipient data and events (visible or not yet) of `members` in `spec`, vectorised."""
        members = np.asarray(members, dtype=np.int64)
        rates = self.rates
        u = uniforms(stable_key(self.seed, "response", spec.slot), members, 26)
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
        repeats_of: list[bool] = []

        def add(
            mask: np.ndarray,
            action: int,
            ts: np.ndarray,
            url: np.ndarray | None = None,
            proxy: bool = False,
            repeat: bool = False,
        ) -> None:
            idx = np.flatnonzero(mask)
            proxies.append(proxy)
            repeats_of.append(repeat)
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
            if k == 0:
                # A double click: the same link in the same second, recorded (and counted by Mailchimp) twice.
                add(
                    clicker & (u[25] < rates.same_second_repeat_click),
                    ACTION_CLICK,
                    first_open + 30 + (u[12] * 2 * HOUR_SECONDS).astype(np.int64),
                    url_index,
                    repeat=True,
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
        ev_repeat = np.concatenate([np.full(len(r), p, np.int8) for r, p in zip(rows, repeats_of, strict=True)])
        # Member order, then time; identical (member, action, time, url) would be one event in Mailchimp too,
        # except a deliberate double click, which Mailchimp records twice.
        order = np.lexsort((ev_repeat, ev_url, ev_action, ev_ts, ev_row))
        columns = (ev_row, ev_action, ev_ts, ev_url, ev_proxy, ev_repeat)
        ev_row, ev_action, ev_ts, ev_url, ev_proxy, ev_repeat = (a[order] for a in columns)
        if len(ev_row) > 1:
            same = (
                (ev_row[1:] == ev_row[:-1])
                & (ev_action[1:] == ev_action[:-1])
                & (ev_ts[1:] == ev_ts[:-1])
                & (ev_url[1:] == ev_url[:-1])
                & (ev_repeat[1:] == ev_repeat[:-1])
            )
            keep = np.concatenate([[True], ~same])
            ev_row, ev_action, ev_ts, ev_url, ev_proxy = (a[keep] for a in (ev_row, ev_action, ev_ts, ev_url, ev_proxy))
        ev_bounce = np.where(ev_action == ACTION_BOUNCE, status[ev_row], -1).astype(np.int8)

        return GeneratedPage(
            members=members,
            status=status,
            send_at=send_at,
            lower_in_activity=u[22] < rates.lower_case_in_activity,
            alt_offset=u[23] < rates.alternative_offset,
            ip_seed=mix64(members.astype(np.uint64) ^ np.uint64(stable_key(self.seed, "ip", spec.slot))),
            unsubscribe_reason=(u[24] * len(UNSUBSCRIBE_REASONS)).astype(np.int64),
            ev_row=ev_row,
            ev_action=ev_action,
            ev_ts=ev_ts,
            ev_url=ev_url,
            ev_bounce=ev_bounce,
            ev_proxy=ev_proxy,
        )

    def scan(self, spec: CampaignSpec, now: int, include_deleted: bool = False):
        """Yield pages covering every visible recipient of the campaign, chunk by chunk."""
        recipients = self.visible_recipients(spec, now, include_deleted)
        for start in range(0, len(recipients), SCAN_CHUNK):
            yield self.generate(spec, np.asarray(recipients[start : start + SCAN_CHUNK], dtype=np.int64))

    # ------------------------------------------------------------------ malformed records

    def malformed_plan(self, spec: CampaignSpec) -> dict[str, Any] | None:
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

                    def delete(state: SharedState, deleted: int = member) -> None:
                        if deleted not in state.deleted_members:
                            state.deleted_members.append(deleted)

                    self._update_state(delete)
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
            for page in self.scan(spec, after):
                appeared += int(((page.ev_ts > before) & (page.ev_ts <= after)).sum())
        return appeared
