"""A loopback HTTP emulator of the Mailchimp Marketing API v3 endpoints the pipeline reads, with fault injection.

Serves a `SandboxAccount` (see mailchimp_data) to the real `mailchimp-marketing` client: set
``client.set_config({"api_key": sb.api_key})`` and ``client.api_client.host = sb.base_url``.
Errors are ``application/problem+json`` like Mailchimp's; faults (429 with an empty body, 5xx, slow responses,
the 10-simultaneous-connections cap per key) are set on ``sb.faults`` and may be changed while it runs.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from campaign_pipeline.sandbox.mailchimp_data import (
    CampaignSpec,
    SandboxAccount,
    format_timestamp,
)

API_PREFIX = "/3.0"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 10  # Mailchimp's default `count`
ERROR_DOC_URL = "https://mailchimp.com/developer/marketing/docs/errors/"


@dataclass
class MailchimpFaults:
    """Faults the sandbox injects; mutable while the server runs (tests flip them between calls).

    rate_429_empty / rate_5xx are probabilities per request; slow_ms delays every response;
    fail_next(n, status) makes the next n requests fail with that status (429 with an empty body).
    max_connections is Mailchimp's cap on simultaneous connections per API key: the one over it gets 429.
    """

    rate_429_empty: float = 0.0
    rate_5xx: float = 0.0
    slow_ms: int = 0
    max_connections: int = 10
    seed: int = 0
    _forced: list[int] = field(default_factory=list, repr=False)
    # Set = requests flow; cleared by pause() = admitted requests wait, so tests can hold connections open.
    _flowing: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _random: random.Random | None = field(default=None, repr=False)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Make the next `n` API requests (after authentication) fail with `status`."""
        with self._lock:
            self._forced.extend([status] * n)

    def __post_init__(self) -> None:
        self._flowing.set()

    def pause(self) -> None:
        """Hold every admitted request (after the connection cap check) until resume()."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def wait_if_paused(self, timeout: float = 60.0) -> None:
        self._flowing.wait(timeout)

    def clear(self) -> None:
        with self._lock:
            self._forced.clear()
        self.rate_429_empty = self.rate_5xx = 0.0
        self.slow_ms = 0

    def draw(self) -> int | None:
        """The status this request must fail with, or None to serve it normally."""
        with self._lock:
            if self._forced:
                return self._forced.pop(0)
            if self._random is None:
                self._random = random.Random(self.seed)
            roll = self._random.random()
        if roll < self.rate_429_empty:
            return 429
        if roll < self.rate_429_empty + self.rate_5xx:
            return 503 if roll < self.rate_429_empty + self.rate_5xx / 2 else 500
        return None


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
            "parent_campaign_id": "",
            "type": "automation" if spec.is_automation else "regular",
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

    def campaigns(self, query: dict[str, str]) -> dict[str, Any]:
        count, offset = _paging(query)
        specs = self.account.campaign_specs(include_unsent=True)
        if query.get("status"):
            specs = [s for s in specs if s.status == query["status"]]
        if query.get("type"):
            wanted = query["type"]
            specs = [s for s in specs if ("automation" if s.is_automation else "regular") == wanted]
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
        return self._campaign(self._spec(cid, sent=False))

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
            "type": "automation" if spec.is_automation else "regular",
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
            specs = [s for s in specs if ("automation" if s.is_automation else "regular") == query["type"]]
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Enough backlog that a burst over the connection cap reaches the handler and gets its 429.
    request_queue_size = 128
    sandbox: MailchimpSandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # the request log lives on the sandbox object; stderr chatter would drown test output

    def do_GET(self) -> None:
        self.server.sandbox._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.sandbox._handle(self, "POST")

    def do_PATCH(self) -> None:
        self.server.sandbox._handle(self, "PATCH")

    def do_PUT(self) -> None:
        self.server.sandbox._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.sandbox._handle(self, "DELETE")


class MailchimpSandbox:
    """A threaded Mailchimp API emulator on loopback; use as a context manager."""

    def __init__(
        self,
        account: SandboxAccount | None = None,
        faults: MailchimpFaults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        request_log_limit: int = 200_000,
    ) -> None:
        self.account = account if account is not None else SandboxAccount()
        self.faults = faults if faults is not None else MailchimpFaults()
        self.routes = MailchimpRoutes(self.account)
        self.request_log: list[tuple[str, str, dict[str, str], int]] = []
        self._logged = threading.Condition()
        # A long-running `serve` must not grow without bound; tests stay far below the limit.
        self.request_log_limit = request_log_limit
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._in_flight: dict[str, int] = {}
        self._in_flight_lock = threading.Lock()
        self.max_in_flight_seen = 0

    @property
    def api_key(self) -> str:
        return self.account.api_key

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Mailchimp sandbox is not running; use it as a context manager or call start()")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}{API_PREFIX}"

    def start(self) -> MailchimpSandbox:
        self._server = _Server((self._host, self._port), _Handler)
        self._server.sandbox = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mailchimp-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Release requests a test left paused, so their threads end with the server.
        self.faults.resume()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MailchimpSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_log(self, predicate, timeout: float = 30.0) -> bool:
        """Block until predicate(request_log) holds (or timeout); lets tests wait on events, not on the clock."""
        with self._logged:
            return self._logged.wait_for(lambda: predicate(self.request_log), timeout)

    def calls(self, path_contains: str = "") -> int:
        """How many requests reached the sandbox whose path contains `path_contains`."""
        return sum(1 for _, path, _, _ in self.request_log if path_contains in path)

    # -------------------------------------------------------------- request handling

    def _authenticated_key(self, handler: BaseHTTPRequestHandler) -> str | None:
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                _, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return password if hmac.compare_digest(password.encode(), self.api_key.encode()) else None
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), self.api_key.encode()):
            return header[7:]
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        key = self._authenticated_key(handler)
        if key is None:
            self._problem(
                handler,
                method,
                path,
                query,
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
            return
        with self._in_flight_lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            in_flight = self._in_flight[key]
            self.max_in_flight_seen = max(self.max_in_flight_seen, in_flight)
        released = False

        def release_slot() -> None:
            # A request stops counting once its answer is ready, before the bytes go out: a client that
            # reads the answer and at once sends its next request must not be seen as one connection too many.
            nonlocal released
            if not released:
                released = True
                with self._in_flight_lock:
                    self._in_flight[key] -= 1

        handler._release_slot = release_slot  # type: ignore[attr-defined]
        try:
            if in_flight > self.faults.max_connections:
                self._problem(
                    handler,
                    method,
                    path,
                    query,
                    429,
                    "Too Many Requests",
                    f"You have exceeded the limit of {self.faults.max_connections} simultaneous connections.",
                )
                return
            self.faults.wait_if_paused()
            if self.faults.slow_ms:
                time.sleep(self.faults.slow_ms / 1000)
            forced = self.faults.draw()
            if forced == 429:
                # Mailchimp's edge answers bursts with a bare 429; the 3.0.80 client returns, not raises, those.
                self._send(handler, method, path, query, 429, b"", None)
                return
            if forced is not None:
                self._problem(
                    handler,
                    method,
                    path,
                    query,
                    forced,
                    HTTPStatus(forced).phrase,
                    "Injected sandbox fault; retry later.",
                )
                return
            if method != "GET":
                self._problem(
                    handler, method, path, query, 405, "Method Not Allowed", "The sandbox serves GET requests only."
                )
                return
            if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
                self._problem(handler, method, path, query, 404, "Resource Not Found", "Unknown API version path.")
                return
            try:
                body = self.routes.dispatch(path[len(API_PREFIX) :] or "/", query)
            except ApiError as err:
                self._problem(handler, method, path, query, err.status, err.title, err.detail)
                return
            except Exception as err:  # a sandbox bug must still answer, or the client hangs on a dropped socket
                self._problem(
                    handler, method, path, query, 500, "Internal Server Error", f"sandbox failed on {path}: {err!r}"
                )
                return
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self._send(handler, method, path, query, 200, payload, "application/json; charset=utf-8")
        finally:
            release_slot()

    def _problem(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        title: str,
        detail: str,
    ) -> None:
        body = {
            "type": ERROR_DOC_URL,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": str(uuid.uuid4()),
        }
        payload = json.dumps(body).encode("utf-8")
        self._send(handler, method, path, query, status, payload, "application/problem+json; charset=utf-8")

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        payload: bytes,
        content_type: str | None,
    ) -> None:
        with self._logged:
            self.request_log.append((method, path, query, status))
            if len(self.request_log) > self.request_log_limit:
                del self.request_log[: len(self.request_log) // 2]
            self._logged.notify_all()
        release = getattr(handler, "_release_slot", None)
        if release is not None:
            release()
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def serve(
    host: str,
    port: int,
    account: SandboxAccount | None = None,
    state_path: Path | str | None = None,
    *,
    stop: threading.Event | None = None,
    on_ready: Callable[[MailchimpSandbox], None] | None = None,
) -> None:
    """Run the Mailchimp sandbox in the foreground until interrupted or `stop` is set (`campaign-pipeline sandbox`).

    With no account, a default one whose clock follows the wall clock (activity keeps arriving as time passes).
    With `state_path`, the clock and simulated sends are shared with every process using the same file.
    """
    if account is None:
        account = SandboxAccount(state_path=state_path, follow_wall_clock=True)
    elif state_path is not None and account.state_path != Path(state_path):
        account = account.with_state_path(state_path)
    sandbox = MailchimpSandbox(account, host=host, port=port).start()
    # The key is a sandbox key derived from the seed, not a credential; people need it to point a client here.
    print(f"Mailchimp sandbox serving {sandbox.base_url} (sandbox API key: {sandbox.api_key})", flush=True)
    if on_ready is not None:
        on_ready(sandbox)
    stop = stop if stop is not None else threading.Event()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m campaign_pipeline.sandbox.mailchimp_api --port 8765` for a quick standalone sandbox."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--state-path", type=Path, default=None)
    args = parser.parse_args(argv)
    account = SandboxAccount(seed=args.seed, n_members=args.members, state_path=args.state_path, follow_wall_clock=True)
    serve(args.host, args.port, account)


if __name__ == "__main__":
    main()
