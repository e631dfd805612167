"""Routes of the sandbox Mailchimp API: (path, query) to the JSON bodies Mailchimp returns, paging and field selection."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

from campaign_pipeline.sandbox.mailchimp_data import CampaignSpec, SandboxAccount, format_timestamp

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 10  # Mailchimp's default `count`
# The title of the sandbox account's RSS campaign (its sends are titled "Blog digest, send N").
RSS_CAMPAIGN_TITLE = "Blog digest"


class ApiError(Exception):
    """An error the handler turns into a problem+json response."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "Invalid Resource", f"The '{name}' parameter must be an integer, got {raw!r}.") from None
    if value < 0:
        raise ApiError(400, "Invalid Resource", f"The '{name}' parameter must not be negative.")
    return value


def _paging(query: dict[str, str]) -> tuple[int, int]:
    count = _int_param(query, "count", DEFAULT_PAGE_SIZE)
    if count > MAX_PAGE_SIZE:
        raise ApiError(400, "Invalid Resource", f"The 'count' parameter must be {MAX_PAGE_SIZE} or less, got {count}.")
    return count, _int_param(query, "offset", 0)


def _time_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ApiError(400, "Invalid Resource", f"The '{name}' parameter is not an ISO 8601 time: {raw!r}.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _dotted_paths(raw: str) -> list[list[str]]:
    return [part.strip().split(".") for part in raw.split(",") if part.strip()]


def select_fields(body: Any, paths: list[list[str]]) -> Any:
    """Keep only the dotted `fields` paths (lists apply the path to each item), as Mailchimp's `fields` does."""
    if isinstance(body, list):
        return [select_fields(item, paths) for item in body]
    if not isinstance(body, dict):
        return body
    kept: dict[str, Any] = {}
    for key, value in body.items():
        matching = [path for path in paths if path[0] == key]
        if not matching:
            continue
        if any(len(path) == 1 for path in matching):
            kept[key] = value
        else:
            kept[key] = select_fields(value, [path[1:] for path in matching])
    return kept


def exclude_fields(body: Any, paths: list[list[str]]) -> Any:
    """Drop the dotted `exclude_fields` paths, as Mailchimp's `exclude_fields` does."""
    if isinstance(body, list):
        return [exclude_fields(item, paths) for item in body]
    if not isinstance(body, dict):
        return body
    kept: dict[str, Any] = {}
    for key, value in body.items():
        matching = [path for path in paths if path[0] == key]
        if any(len(path) == 1 for path in matching):
            continue
        kept[key] = exclude_fields(value, [path[1:] for path in matching]) if matching else value
    return kept


class MailchimpRoutes:
    """Maps (path, query) to JSON bodies from a SandboxAccount; transport-free so it is easy to reason about."""

    def __init__(self, account: SandboxAccount) -> None:
        self.account = account
        self._routes: list[tuple[re.Pattern[str], Any]] = [
            (re.compile(r"/?"), self.root),
            (re.compile(r"/ping/?"), self.ping),
            (re.compile(r"/campaigns/?"), self.campaigns),
            (re.compile(r"/campaigns/(?P<cid>[^/]+)/?"), self.campaign),
            (re.compile(r"/campaigns/(?P<cid>[^/]+)/content/?"), self.content),
            (re.compile(r"/reports/?"), self.reports),
            (re.compile(r"/reports/(?P<cid>[^/]+)/?"), self.report),
            (re.compile(r"/reports/(?P<cid>[^/]+)/email-activity/?"), self.email_activity),
            (re.compile(r"/reports/(?P<cid>[^/]+)/sent-to/?"), self.sent_to),
            (re.compile(r"/reports/(?P<cid>[^/]+)/unsubscribed/?"), self.unsubscribed),
            (re.compile(r"/automations/?"), self.automations),
            (re.compile(r"/automations/(?P<wid>[^/]+)/?"), self.automation),
            (re.compile(r"/automations/(?P<wid>[^/]+)/emails/?"), self.automation_emails),
            (re.compile(r"/lists/?"), self.lists),
            (re.compile(r"/lists/(?P<lid>[^/]+)/?"), self.list),
        ]

    def dispatch(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        for pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match:
                body = handler(query, **match.groupdict())
                if query.get("fields"):
                    body = select_fields(body, _dotted_paths(query["fields"]))
                if query.get("exclude_fields"):
                    body = exclude_fields(body, _dotted_paths(query["exclude_fields"]))
                return body
        raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")

    # -------------------------------------------------------------- helpers

    def _spec(self, campaign_id: str, *, sent: bool) -> CampaignSpec:
        spec = self.account.spec(campaign_id, include_unsent=not sent)
        if spec is None:
            raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
        return spec

    def _summary(self, spec: CampaignSpec) -> dict[str, Any]:
        totals = self.account.report_totals(spec)
        return {
            "opens": totals["opens_total"],
            "unique_opens": totals["unique_opens"],
            "open_rate": totals["open_rate"],
            "clicks": totals["clicks_total"],
            "subscriber_clicks": totals["unique_subscriber_clicks"],
            "click_rate": totals["click_rate"],
        }

    def _settings(self, spec: CampaignSpec) -> dict[str, Any]:
        return {
            "subject_line": spec.subject_line,
            "preview_text": f"{spec.subject_line} — inside: news and offers",
            "title": spec.title,
            "from_name": "Example Co",
            "reply_to": "news@example.com",
            "use_conversation": False,
            "to_name": "*|FNAME|*",
            "folder_id": "",
            "authenticate": True,
            "auto_footer": False,
            "inline_css": False,
            "auto_tweet": False,
            "fb_comments": False,
            "timewarp": False,
            "template_id": 0,
            "drag_and_drop": True,
        }

    def _campaign(self, spec: CampaignSpec) -> dict[str, Any]:
        sent = spec.status != "save"
        recipients = self.account.report_totals(spec)["emails_sent"] if sent else 0
        return {
            "id": spec.campaign_id,
            "web_id": int(spec.campaign_id[:6], 16),
            "parent_campaign_id": spec.parent_campaign_id or "",
            "type": spec.mailchimp_type,
            "create_time": format_timestamp(spec.create_time),
            "archive_url": f"https://eepurl.com/{spec.campaign_id}",
            "long_archive_url": f"https://us21.campaign-archive.com/?u=sandbox&id={spec.campaign_id}",
            "status": spec.status,
            "emails_sent": recipients,
            "send_time": format_timestamp(spec.send_time) if sent else "",
            "content_type": "template",
            "needs_block_refresh": False,
            "resendable": False,
            "recipients": {
                "list_id": self.account.list_id,
                "list_is_active": True,
                "list_name": "Sandbox audience",
                "segment_text": "" if spec.segment_share >= 1 else "Engaged subscribers",
                "recipient_count": recipients,
            },
            "settings": self._settings(spec),
            "tracking": {"opens": True, "html_clicks": True, "text_clicks": False, "goal_tracking": False},
            "report_summary": self._summary(spec) if sent else {},
            "delivery_status": {"enabled": False},
            "_links": [],
        }

    # -------------------------------------------------------------- endpoints

    def ping(self, query: dict[str, str]) -> dict[str, Any]:
        return {"health_status": "Everything's Chimpy!"}

    def root(self, query: dict[str, str]) -> dict[str, Any]:
        """API Root: the account the key belongs to (the pipeline keys its state by ``account_id``)."""
        return {
            "account_id": hashlib.sha1(f"{self.account.seed}|account".encode()).hexdigest()[:25],
            "login_id": hashlib.sha1(f"{self.account.seed}|login".encode()).hexdigest()[:10],
            "account_name": "Sandbox account",
            "email": "sandbox@example.com",
            "role": "owner",
            "total_subscribers": self.account.n_members,
        }

    def campaigns(self, query: dict[str, str]) -> dict[str, Any]:
        count, offset = _paging(query)
        specs = self.account.campaign_specs(include_unsent=True)
        if query.get("status"):
            specs = [s for s in specs if s.status == query["status"]]
        if query.get("type"):
            wanted = query["type"]
            specs = [s for s in specs if s.mailchimp_type == wanted]
        if query.get("list_id"):
            specs = [s for s in specs if query["list_id"] == self.account.list_id]
        since = _time_param(query, "since_send_time")
        before = _time_param(query, "before_send_time")
        if since is not None:
            specs = [s for s in specs if s.status != "save" and s.send_time > since]
        if before is not None:
            specs = [s for s in specs if s.status != "save" and s.send_time < before]
        since_create = _time_param(query, "since_create_time")
        if since_create is not None:
            specs = [s for s in specs if s.create_time > since_create]
        sort_field = query.get("sort_field")
        if sort_field not in (None, "", "send_time", "create_time"):
            raise ApiError(
                400, "Invalid Resource", f"sort_field must be 'create_time' or 'send_time', got {sort_field!r}."
            )
        key = (lambda s: s.send_time) if sort_field == "send_time" else (lambda s: s.create_time)
        if sort_field:
            specs = sorted(specs, key=key, reverse=query.get("sort_dir", "ASC").upper() == "DESC")
        page = specs[offset : offset + count]
        return {"campaigns": [self._campaign(s) for s in page], "total_items": len(specs), "_links": []}

    def campaign(self, query: dict[str, str], cid: str) -> dict[str, Any]:
        if self.account.every_campaign_type and cid == self.account.rss_campaign_id:
            return self._rss_campaign()
        return self._campaign(self._spec(cid, sent=False))

    def _rss_campaign(self) -> dict[str, Any]:
        """The RSS campaign itself: it keeps sending (each send is a campaign of its own, naming it as parent)."""
        return {
            "id": self.account.rss_campaign_id,
            "web_id": int(self.account.rss_campaign_id[:6], 16),
            "parent_campaign_id": "",
            "type": "rss",
            "status": "sending",
            "emails_sent": 0,
            "send_time": "",
            "recipients": {"list_id": self.account.list_id, "list_name": "Sandbox audience"},
            "settings": {"title": RSS_CAMPAIGN_TITLE, "subject_line": "*|RSSFEED:TITLE|*", "from_name": "Example Co"},
            "rss_opts": {"feed_url": "https://example.com/blog/feed", "frequency": "weekly"},
            "_links": [],
        }

    def content(self, query: dict[str, str], cid: str) -> dict[str, Any]:
        spec = self._spec(cid, sent=False)
        links = "".join(f'<p><a href="{url}">Read more</a></p>' for url in spec.urls)
        html = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{spec.subject_line}</title></head><body>"
            f"<h1>{spec.subject_line}</h1><p>Hello *|FNAME|*,</p>{links}"
            "<p><a href='*|UNSUB|*'>Unsubscribe</a></p></body></html>"
        )
        plain = f"{spec.subject_line}\n\nHello *|FNAME|*,\n\n" + "\n".join(spec.urls)
        return {"plain_text": plain, "html": html, "archive_html": html, "_links": []}

    def _report(self, spec: CampaignSpec) -> dict[str, Any]:
        totals = self.account.report_totals(spec)
        return {
            "id": spec.campaign_id,
            "campaign_title": spec.title,
            "type": spec.report_type,
            "list_id": self.account.list_id,
            "list_is_active": True,
            "list_name": "Sandbox audience",
            "subject_line": spec.subject_line,
            "preview_text": self._settings(spec)["preview_text"],
            "emails_sent": totals["emails_sent"],
            "abuse_reports": totals["abuse_reports"],
            "unsubscribed": totals["unsubscribed"],
            "send_time": format_timestamp(spec.send_time),
            "rss_last_send": "",
            "bounces": {"hard_bounces": totals["hard"], "soft_bounces": totals["soft"], "syntax_errors": 0},
            "forwards": {"forwards_count": totals["forwards_count"], "forwards_opens": totals["forwards_opens"]},
            "opens": {
                "opens_total": totals["opens_total"],
                "proxy_excluded_opens": totals["proxy_excluded_opens"],
                "unique_opens": totals["unique_opens"],
                "proxy_excluded_unique_opens": totals["proxy_excluded_unique_opens"],
                "open_rate": totals["open_rate"],
                "proxy_excluded_open_rate": totals["proxy_excluded_open_rate"],
                "last_open": totals["last_open"],
            },
            "clicks": {
                "clicks_total": totals["clicks_total"],
                "unique_clicks": totals["unique_clicks"],
                "unique_subscriber_clicks": totals["unique_subscriber_clicks"],
                "click_rate": totals["click_rate"],
                "last_click": totals["last_click"],
            },
            "list_stats": {"sub_rate": 0, "unsub_rate": 0, "open_rate": 0, "click_rate": 0},
            "delivery_status": {"enabled": False},
            "_links": [],
        }

    def reports(self, query: dict[str, str]) -> dict[str, Any]:
        count, offset = _paging(query)
        specs = self.account.campaign_specs()
        if query.get("type"):
            specs = [s for s in specs if s.mailchimp_type == query["type"]]
        since = _time_param(query, "since_send_time")
        if since is not None:
            specs = [s for s in specs if s.send_time > since]
        return {
            "reports": [self._report(s) for s in specs[offset : offset + count]],
            "total_items": len(specs),
            "_links": [],
        }

    def report(self, query: dict[str, str], cid: str) -> dict[str, Any]:
        return self._report(self._spec(cid, sent=True))

    def email_activity(self, query: dict[str, str], cid: str) -> dict[str, Any]:
        spec = self._spec(cid, sent=True)
        count, offset = _paging(query)
        since = _time_param(query, "since")
        # Mailchimp's switch to leave out bot and privacy-proxy activity (the 3.0.80 client lacks the keyword).
        filter_bots = query.get("filter_bots", "false").lower() in ("true", "1")
        listed, empty_listed = self.account.activity_listing(spec, since, filter_bots)
        total = len(listed) + int(empty_listed)
        page_members = np.asarray(listed[offset : offset + count], dtype=np.int64)
        emails = self.account.activity_entries(spec, page_members, since, filter_bots) if len(page_members) else []
        if empty_listed and offset <= len(listed) < offset + count:
            emails.append(self.account.empty_email_entry(spec))
        return {"emails": emails, "campaign_id": spec.campaign_id, "total_items": total, "_links": []}

    def sent_to(self, query: dict[str, str], cid: str) -> dict[str, Any]:
        spec = self._spec(cid, sent=True)
        count, offset = _paging(query)
        recipients = self.account.visible_recipients(spec, self.account.now_epoch)
        page_members = np.asarray(recipients[offset : offset + count], dtype=np.int64)
        sent_to = self.account.sent_to_entries(spec, page_members) if len(page_members) else []
        return {"sent_to": sent_to, "campaign_id": spec.campaign_id, "total_items": len(recipients), "_links": []}

    def unsubscribed(self, query: dict[str, str], cid: str) -> dict[str, Any]:
        spec = self._spec(cid, sent=True)
        count, offset = _paging(query)
        listing = self.account.unsubscribed_listing(spec)
        return {
            "unsubscribes": listing[offset : offset + count],
            "campaign_id": spec.campaign_id,
            "total_items": len(listing),
            "_links": [],
        }

    def _automation_email_specs(self) -> list[CampaignSpec]:
        return [s for s in self.account.campaign_specs() if s.is_automation]

    def _automation(self) -> dict[str, Any]:
        emails = self._automation_email_specs()
        sent = sum(self.account.report_totals(s)["emails_sent"] for s in emails)
        return {
            "id": self.account.workflow_id,
            "create_time": format_timestamp(self.account.workflow_start - 5 * 86_400),
            "start_time": format_timestamp(self.account.workflow_start),
            "status": "sending",
            "emails_sent": sent,
            "recipients": {"list_id": self.account.list_id, "list_is_active": True, "list_name": "Sandbox audience"},
            "settings": {
                "title": "Welcome series",
                "from_name": "Example Co",
                "reply_to": "news@example.com",
                "use_conversation": False,
                "to_name": "*|FNAME|*",
                "authenticate": True,
                "auto_footer": False,
                "inline_css": False,
            },
            "tracking": {"opens": True, "html_clicks": True, "text_clicks": False},
            "trigger_settings": {"workflow_type": "welcomeSeries", "workflow_title": "Welcome new subscribers"},
            "report_summary": {},
            "_links": [],
        }

    def automations(self, query: dict[str, str]) -> dict[str, Any]:
        count, offset = _paging(query)
        workflows = [self._automation()] if self.account.n_automation_emails else []
        return {"automations": workflows[offset : offset + count], "total_items": len(workflows), "_links": []}

    def automation(self, query: dict[str, str], wid: str) -> dict[str, Any]:
        if wid != self.account.workflow_id or not self.account.n_automation_emails:
            raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
        return self._automation()

    def automation_emails(self, query: dict[str, str], wid: str) -> dict[str, Any]:
        if wid != self.account.workflow_id or not self.account.n_automation_emails:
            raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
        emails = []
        for spec in self._automation_email_specs():
            email = self._campaign(spec)
            email.update(
                workflow_id=wid,
                position=spec.position,
                delay={"amount": 3 * (spec.position - 1), "type": "day", "direction": "after", "action": "signup"},
                start_time=format_timestamp(spec.send_time),
                status="sending",
                trigger_settings={"workflow_type": "welcomeSeries"},
            )
            emails.append(email)
        return {"emails": emails, "total_items": len(emails), "_links": []}

    def _list(self) -> dict[str, Any]:
        sent = [s for s in self.account.campaign_specs() if not s.is_automation]
        return {
            "id": self.account.list_id,
            "web_id": int(self.account.list_id[:6], 16),
            "name": "Sandbox audience",
            "contact": {
                "company": "Example Co",
                "address1": "1 Example Street",
                "city": "Example City",
                "country": "US",
            },
            "permission_reminder": "You signed up on example.com.",
            "use_archive_bar": True,
            "campaign_defaults": {
                "from_name": "Example Co",
                "from_email": "news@example.com",
                "subject": "",
                "language": "en",
            },
            "date_created": format_timestamp(self.account.workflow_start - 365 * 86_400),
            "list_rating": 4,
            "email_type_option": False,
            "visibility": "prv",
            "double_optin": True,
            "stats": {
                "member_count": self.account.n_members,
                "unsubscribe_count": 0,
                "cleaned_count": 0,
                "campaign_count": len(sent),
                "campaign_last_sent": format_timestamp(sent[-1].send_time) if sent else "",
            },
            "_links": [],
        }

    def lists(self, query: dict[str, str]) -> dict[str, Any]:
        return {"lists": [self._list()], "total_items": 1, "_links": []}

    def list(self, query: dict[str, str], lid: str) -> dict[str, Any]:
        if lid != self.account.list_id:
            raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
        return self._list()
