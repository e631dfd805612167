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

from typing import Any

import numpy as np

from campaign_pipeline.sandbox.mailchimp_generator import AccountGenerator
from campaign_pipeline.sandbox.mailchimp_model import (
    ACTION_BOUNCE,
    ACTION_CLICK,
    ACTION_NAMES,
    ACTION_OPEN,
    ACTION_UNSUBSCRIBE,
    STATUS_HARD,
    STATUS_NAMES,
    STATUS_SOFT,
    UNPARSABLE_TIMESTAMP,
    UNSUBSCRIBE_REASONS,
    CampaignSpec,
    GeneratedPage,
    ResponseRates,
    email_id_of,
    format_timestamp,
    stable_key,
    uniforms,
)


class SandboxAccount(AccountGenerator):
    """The synthetic account as its API serves it: each method is what one endpoint lists or reports."""

    def activity_listing(
        self, spec: CampaignSpec, since: int | None, filter_bots: bool = False
    ) -> tuple[range | np.ndarray, bool]:
        """Members email-activity lists (ascending) and whether the empty-address entry is listed after them."""
        now = self.now_epoch
        plan = self.malformed_plan(spec)
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
            for page in self.scan(spec, now):
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
        plan = self.malformed_plan(spec)
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
        plan = self.malformed_plan(spec)
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
    def _ip(page: GeneratedPage, row: int, proxy: bool) -> str:
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
        for page in self.scan(spec, now):
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
                        "reason": UNSUBSCRIBE_REASONS[int(page.unsubscribe_reason[row])],
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
        for page in self.scan(spec, now, include_deleted=True):
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
        u = uniforms(stable_key(self.seed, "report-extras", spec.slot), np.arange(3), 1)[0]
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


__all__ = ["CampaignSpec", "ResponseRates", "SandboxAccount", "email_id_of", "format_timestamp"]
