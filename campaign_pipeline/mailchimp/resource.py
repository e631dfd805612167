"""The Mailchimp Marketing API client as a Dagster resource: paging, one retrying transport, the connection cap."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import requests
from mailchimp_marketing.api_client import ApiClient, ApiClientError
from pydantic import Field, PrivateAttr

from campaign_pipeline.core.events import is_valid_campaign_id
from campaign_pipeline.mailchimp.campaigns import SentCampaign, sent_campaign
from campaign_pipeline.transport import READ_ONLY_METHODS, RETRY_STATUSES, RetryPolicy, retrying_session

logger = logging.getLogger(__name__)

API_KEY_ENV = "MAILCHIMP_API_KEY"
BASE_URL_ENV = "MAILCHIMP_BASE_URL"
LIVE_SOURCE_MESSAGE = "Mailchimp source: Mailchimp API"
# Mailchimp refuses more than 10 simultaneous connections per API key (429 beyond that).
MAILCHIMP_CONNECTION_LIMIT = 10
MAILCHIMP_MAX_PAGE_SIZE = 1000
MAX_RELISTINGS = 2
# What a caller makes of one page of records (``MailchimpResource._get_pages``).
T = TypeVar("T")
# What the pipeline reads from each report listing; `total_items` drives paging.
EMAIL_ACTIVITY_FIELDS = "emails.email_address,emails.email_id,emails.activity,total_items"
SENT_TO_FIELDS = "sent_to.email_address,sent_to.email_id,sent_to.status,total_items"
UNSUBSCRIBED_FIELDS = "unsubscribes.email_address,unsubscribes.email_id,unsubscribes.timestamp,total_items"
_DATA_CENTER_PATTERN = re.compile(r"^[a-z]{2,4}[0-9]{1,3}$")

# One semaphore per key and process, so every resource copy and thread shares the same cap.
_connection_slots: dict[str, threading.BoundedSemaphore] = {}
_connection_slots_lock = threading.Lock()


class MailchimpApiError(RuntimeError):
    """Mailchimp refused a request or kept failing; the message names the endpoint and the reason."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class MailchimpCallStats:
    """Counts of requests made; assets take the difference around a fetch for their metadata."""

    api_calls: int = 0
    pages: int = 0
    retries: int = 0
    throttled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, api_calls: int = 0, pages: int = 0, retries: int = 0, throttled: int = 0) -> None:
        with self._lock:
            self.api_calls += api_calls
            self.pages += pages
            self.retries += retries
            self.throttled += throttled

    def snapshot(self) -> MailchimpCallStats:
        with self._lock:
            return MailchimpCallStats(self.api_calls, self.pages, self.retries, self.throttled)

    def since(self, earlier: MailchimpCallStats) -> MailchimpCallStats:
        now = self.snapshot()
        return MailchimpCallStats(
            now.api_calls - earlier.api_calls,
            now.pages - earlier.pages,
            now.retries - earlier.retries,
            now.throttled - earlier.throttled,
        )


def _data_center(api_key: str) -> str:
    """The `<dc>` suffix of a Mailchimp key (`...-us21`), validated without ever echoing the key."""
    _, sep, dc = api_key.strip().rpartition("-")
    if not sep or not _DATA_CENTER_PATTERN.match(dc):
        raise MailchimpApiError(
            f"{API_KEY_ENV} does not end in a data-center suffix like '-us21'; copy the whole key from "
            "Mailchimp (Account > Extras > API keys)"
        )
    return dc


class MailchimpResource(dg.ConfigurableResource, ABC):
    """Reads campaign reports from the Mailchimp Marketing API v3; where it connects is the subclass's business.

    ``LiveMailchimpResource`` (below) talks to a Mailchimp account with a real key; the sandbox resource lives
    in ``campaign_pipeline.sandbox.resources`` and is chosen only when Definitions are built
    (``campaign_pipeline.deployment``), so production code never reaches the emulator. Every request goes through
    one ``requests.Session`` whose urllib3 Retry handles 429 (with Retry-After), 5xx and timeouts.
    """

    page_size: int = Field(
        default=MAILCHIMP_MAX_PAGE_SIZE,
        ge=1,
        le=MAILCHIMP_MAX_PAGE_SIZE,
        description="Records per page (count).",
    )
    overlap_minutes: int = Field(
        default=60,
        ge=0,
        description="How far before the cursor an incremental email-activity fetch starts.",
    )
    filter_bots: bool = Field(
        default=False,
        description=(
            "Ask Mailchimp to drop bot and privacy-proxy (Apple Mail Privacy Protection) activity: email-activity's "
            "documented `filter_bots` parameter. Reports are then reconciled on their proxy-excluded opens."
        ),
    )
    max_connections: int = Field(
        default=MAILCHIMP_CONNECTION_LIMIT,
        ge=1,
        le=MAILCHIMP_CONNECTION_LIMIT,
        description="Simultaneous requests per process; Mailchimp allows 10 per key.",
    )
    max_retries: int = Field(
        default=8,
        ge=0,
        le=20,
        description="Retries of one request on 429, 5xx and timeouts.",
    )
    backoff_base_seconds: float = Field(default=1.0, ge=0, description="Second retry waits this long, then doubling.")
    backoff_max_seconds: float = Field(default=60.0, ge=0, description="Cap of one retry wait.")
    trim_fields: bool = Field(
        default=True,
        description="Ask only for the fields the pipeline reads (Mailchimp's `fields`): smaller pages, faster fetches.",
    )
    timeout_seconds: float = Field(default=60.0, gt=0, description="Per-request timeout.")

    _stats: MailchimpCallStats = PrivateAttr(default_factory=MailchimpCallStats)
    _client: Any = PrivateAttr(default=None)
    _key_fingerprint: str = PrivateAttr(default="")
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _identity: str = PrivateAttr(default="")

    # ---------------------------------------------------------------- what a subclass says

    @abstractmethod
    def _connection(self) -> tuple[str, str | None]:
        """The API key and the API root to use (None = https://<dc>.api.mailchimp.com/3.0)."""

    @property
    @abstractmethod
    def uses_sandbox(self) -> bool: ...

    @property
    @abstractmethod
    def source_description(self) -> str:
        """One line for logs, metadata and the job description: which account this reads."""

    @abstractmethod
    def now(self) -> pd.Timestamp:
        """Mailchimp's "now": the sensor's lookback and the attribution window are measured on it."""

    def source_identity(self) -> str:
        """Which account this is, for the state it owns (cursors, partitions): ``mailchimp:<account_id>``.

        Read once from the API root (GET /3.0/), which names the account a key belongs to.
        """
        if not self._identity:
            account = self._get("/")
            account_id = account.get("account_id") if isinstance(account, dict) else None
            if not account_id:
                raise MailchimpApiError("Mailchimp GET / named no account_id; cannot tell which account this is")
            self._identity = f"mailchimp:{account_id}"
        return self._identity

    # ---------------------------------------------------------------- connection

    @property
    def stats(self) -> MailchimpCallStats:
        return self._stats

    def _observe_retry(self, method: str, url: str, status: int | None, error: Exception | None) -> None:
        self._stats.add(api_calls=1, retries=1, throttled=int(status == 429))
        logger.warning(
            "Mailchimp %s %s: %s; retrying",
            method,
            urlsplit(url).path,
            f"HTTP {status}" if status else f"network error ({type(error).__name__})",
        )

    def _api_client(self) -> Any:
        with self._client_lock:
            if self._client is not None:
                return self._client
            api_key, base_url = self._connection()
            server = _data_center(api_key)
            policy = RetryPolicy(
                retries=self.max_retries,
                backoff_seconds=self.backoff_base_seconds,
                backoff_max_seconds=self.backoff_max_seconds,
                jitter_seconds=self.backoff_base_seconds,
                idempotent_methods=READ_ONLY_METHODS,
            )
            session = retrying_session(policy, observer=self._observe_retry, pool_size=self.max_connections)
            client = _SessionApiClient(session, {"api_key": api_key, "server": server, "timeout": self.timeout_seconds})
            if base_url:
                client.host = base_url.rstrip("/")
            # Only a short fingerprint of the key identifies its connection slots; the key itself is kept nowhere else.
            self._key_fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:16]
            self._client = client
            logger.info(self.source_description)
            return client

    def _slots(self) -> threading.BoundedSemaphore:
        with _connection_slots_lock:
            slots = _connection_slots.get(self._key_fingerprint)
            if slots is None:
                slots = threading.BoundedSemaphore(self.max_connections)
                _connection_slots[self._key_fingerprint] = slots
            return slots

    # ---------------------------------------------------------------- one request

    def _get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        """One GET; the session retries 429 (Retry-After honoured), 5xx, timeouts and connection errors."""
        client = self._api_client()
        query_pairs = [(name, value) for name, value in (query or {}).items() if value is not None]
        with self._slots():
            self._stats.add(api_calls=1)
            try:
                result = client.call_api(path, "GET", query_params=query_pairs)
            except ApiClientError as error:
                status = error.status_code
                if status is None:
                    # The client wraps timeouts and connection errors (after the session's retries) with no status.
                    raise MailchimpApiError(
                        f"Mailchimp GET {path} still failing after {self.max_retries + 1} attempts "
                        f"(last: network error ({_network_reason(error.text)}))"
                    ) from None
                problem = _problem_body(error.text)
                detail, title = problem.get("detail"), problem.get("title")
                raise MailchimpApiError(
                    f"Mailchimp GET {path} "
                    + (f"still failing after {self.max_retries + 1} attempts: " if _retryable(status) else "")
                    + f"failed with HTTP {status}"
                    + (f" ({title}: {detail})" if title or detail else "")
                    + (f"; check {API_KEY_ENV}" if status in (401, 403) else ""),
                    status=status,
                ) from None
        if isinstance(result, requests.Response):
            # mailchimp-marketing 3.0.80 returns, not raises, a response whose body is empty (a bare 429).
            if _retryable(result.status_code):
                raise MailchimpApiError(
                    f"Mailchimp GET {path} still failing after {self.max_retries + 1} attempts "
                    f"(last: HTTP {result.status_code} with an empty body)",
                    result.status_code,
                )
            raise MailchimpApiError(
                f"Mailchimp GET {path} failed with HTTP {result.status_code}"
                + (" and an empty body" if result.ok else ""),
                result.status_code,
            )
        if not isinstance(result, (dict, list)):
            raise MailchimpApiError(f"Mailchimp GET {path} answered with something that is not JSON")
        return result

    def _get_all(self, path: str, items_key: str, query: dict[str, Any] | None = None) -> list[Any]:
        """Every record of a paged collection, in Mailchimp's order (see ``_get_pages``)."""
        return [record for page in self._get_pages(path, items_key, query, list) for record in page]

    def _get_pages(
        self, path: str, items_key: str, query: dict[str, Any] | None, per_page: Callable[[list[Any]], T]
    ) -> list[T]:
        """``per_page`` of each page of a paged collection, in page order: the first page tells the total, the rest
        load in parallel, and each page is handed to ``per_page`` as it arrives (in the thread that fetched it), so
        a caller that turns records into compact rows never holds the whole collection as JSON objects.

        Offset paging over a collection that grows while we read it can skip a record; when the
        total changes between pages the whole listing is read again (bounded), since a record
        skipped here could fall behind the incremental cursor for good.
        """
        for _listing in range(MAX_RELISTINGS + 1):
            pages, totals = self._list_once(path, items_key, dict(query or {}), per_page)
            if len(set(totals)) <= 1:
                return pages
            logger.warning(
                "Mailchimp GET %s: total_items changed while paging (%s); reading the listing again",
                path,
                sorted(set(totals)),
            )
        return pages

    def _list_once(
        self, path: str, items_key: str, base_query: dict[str, Any], per_page: Callable[[list[Any]], T]
    ) -> tuple[list[T], list[int]]:
        page_size = self.page_size
        first = self._get(path, {**base_query, "count": page_size, "offset": 0})
        self._stats.add(pages=1)
        records = list(_items(first, items_key, path))
        total = int(first.get("total_items", len(records)) or 0)
        totals = [total]
        if len(records) >= total or not records:
            return [per_page(records)], totals
        # A server that serves fewer than asked per page sets the stride.
        stride = min(page_size, len(records))
        offsets = list(range(stride, total, stride))
        del first

        def fetch(offset: int) -> tuple[T, int]:
            page = self._get(path, {**base_query, "count": stride, "offset": offset})
            self._stats.add(pages=1)
            return per_page(list(_items(page, items_key, path))), int(page.get("total_items", total) or 0)

        pages = [per_page(records)]
        del records
        with ThreadPoolExecutor(max_workers=min(self.max_connections, len(offsets))) as pool:
            for page, page_total in pool.map(fetch, offsets):
                pages.append(page)
                totals.append(page_total)
        return pages, totals

    # ---------------------------------------------------------------- what the assets use

    def ping(self) -> dict[str, Any]:
        return self._get("/ping")

    def audiences(self) -> list[dict[str, Any]]:
        """The account's audiences (Mailchimp lists) with their ids and names, for the preflight check."""
        return self._get_all("/lists", "lists")

    def list_sent_campaigns(
        self, since_send_time: pd.Timestamp | None = None, list_id: str | None = None
    ) -> list[SentCampaign]:
        """Sent regular campaigns and sending/sent automation emails, oldest send first; only those sent to the
        audience `list_id` when given (a sync profile's audience: the resource itself serves every profile)."""
        since_param = _format_since(since_send_time) if since_send_time is not None else None
        campaign_records = self._get_all(
            "/campaigns",
            "campaigns",
            {
                "status": "sent",
                "since_send_time": since_param,
                "list_id": list_id,
                "sort_field": "send_time",
                "sort_dir": "ASC",
            },
        )
        found: dict[str, SentCampaign] = {}
        for record in campaign_records:
            campaign = sent_campaign(record)
            if campaign is not None:
                found[campaign.id] = campaign
        for automation in self._get_all("/automations", "automations"):
            automation_id = automation.get("id")
            if not isinstance(automation_id, str) or not is_valid_campaign_id(automation_id):
                continue
            if list_id and (automation.get("recipients") or {}).get("list_id") not in (None, list_id):
                continue
            emails = self._get(f"/automations/{automation_id}/emails")
            self._stats.add(pages=1)
            for email in _items(emails, "emails", f"/automations/{automation_id}/emails"):
                campaign = sent_campaign(email, automation_id=automation_id)
                if campaign is None or campaign.id in found:
                    continue
                if since_send_time is not None and campaign.send_time < since_send_time:
                    continue
                found[campaign.id] = campaign
        return sorted(found.values(), key=lambda campaign: (campaign.send_time, campaign.id))

    def automation_workflows(self) -> dict[str, tuple[str, str | None]]:
        """Automation email id -> (its workflow's id, the workflow's title), from /automations and their emails.

        Reports and campaign records carry no workflow id; the automation emails Mailchimp lists per workflow do
        (``workflow_id``), which is what groups an automation's emails under one parent Campaign.
        """
        found: dict[str, tuple[str, str | None]] = {}
        for automation in self._get_all("/automations", "automations"):
            automation_id = automation.get("id") if isinstance(automation, dict) else None
            if not isinstance(automation_id, str) or not is_valid_campaign_id(automation_id):
                continue
            title = (automation.get("settings") or {}).get("title")
            emails = self._get(f"/automations/{automation_id}/emails")
            self._stats.add(pages=1)
            for email in _items(emails, "emails", f"/automations/{automation_id}/emails"):
                email_id = email.get("id") if isinstance(email, dict) else None
                if is_valid_campaign_id(email_id):
                    workflow = email.get("workflow_id") or automation_id
                    found[str(email_id)] = (str(workflow), title if isinstance(title, str) and title else None)
        return found

    def rss_campaigns(self, send_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """RSS send id -> (its RSS campaign's id, that campaign's title), from /campaigns/{id} (parent_campaign_id).

        Reports name no parent; the send's campaign record does. A send whose record has none is left out; an RSS
        campaign Mailchimp no longer serves (deleted) has no title.
        """
        parents: dict[str, str] = {}
        for send_id in send_ids:
            record = self._get(f"/campaigns/{checked_campaign_id(send_id)}", {"fields": "id,parent_campaign_id"})
            parent = record.get("parent_campaign_id") if isinstance(record, dict) else None
            if is_valid_campaign_id(parent):
                parents[send_id] = str(parent)
        titles: dict[str, str | None] = {}
        for parent in sorted(set(parents.values())):
            try:
                record = self._get(f"/campaigns/{parent}", {"fields": "id,settings.title"})
            except MailchimpApiError as error:
                if error.status != 404:
                    raise
                record = {}
            title = ((record or {}).get("settings") or {}).get("title")
            titles[parent] = title if isinstance(title, str) and title else None
        return {send_id: (parent, titles[parent]) for send_id, parent in parents.items()}

    def fetch_email_activity(self, campaign_id: str, since: pd.Timestamp | None = None) -> list[Any]:
        """`emails` records of /reports/{id}/email-activity, all of them or those with activity after `since`."""
        return [record for page in self.fetch_email_activity_pages(campaign_id, list, since=since) for record in page]

    def fetch_email_activity_pages(
        self, campaign_id: str, per_page: Callable[[list[Any]], T], since: pd.Timestamp | None = None
    ) -> list[T]:
        """``per_page`` of each page of `fetch_email_activity`'s records, in page order (``_get_pages``)."""
        query: dict[str, Any] = {
            "since": _format_since(since) if since is not None else None,
            "fields": EMAIL_ACTIVITY_FIELDS if self.trim_fields else None,
        }
        if self.filter_bots:
            # Mailchimp's documented name (the current official SDKs send `filter_bots`); the 3.0.80 client's
            # get_email_activity_for_campaign rejects the keyword, hence call_api.
            query["filter_bots"] = "true"
        return self._get_pages(f"/reports/{checked_campaign_id(campaign_id)}/email-activity", "emails", query, per_page)

    def fetch_unsubscribes(self, campaign_id: str) -> list[Any]:
        return self._get_all(
            f"/reports/{checked_campaign_id(campaign_id)}/unsubscribed",
            "unsubscribes",
            {"fields": UNSUBSCRIBED_FIELDS if self.trim_fields else None},
        )

    def fetch_recipients(self, campaign_id: str) -> list[Any]:
        return [record for page in self.fetch_recipient_pages(campaign_id, list) for record in page]

    def fetch_recipient_pages(self, campaign_id: str, per_page: Callable[[list[Any]], T]) -> list[T]:
        """``per_page`` of each page of /reports/{id}/sent-to, in page order (``_get_pages``)."""
        return self._get_pages(
            f"/reports/{checked_campaign_id(campaign_id)}/sent-to",
            "sent_to",
            {"fields": SENT_TO_FIELDS if self.trim_fields else None},
            per_page,
        )

    def fetch_report(self, campaign_id: str) -> dict[str, Any]:
        report = self._get(f"/reports/{checked_campaign_id(campaign_id)}")
        self._stats.add(pages=1)
        return report

    def fetch_content_html(self, campaign_id: str) -> str:
        content = self._get(f"/campaigns/{checked_campaign_id(campaign_id)}/content")
        self._stats.add(pages=1)
        html = content.get("html") if isinstance(content, dict) else None
        return html if isinstance(html, str) else ""


class _SessionApiClient(ApiClient):
    """mailchimp-marketing's ApiClient sending through our session instead of the ``requests`` module functions.

    3.0.80's ``ApiClient.request`` calls ``requests.get`` & co. directly, so a Session (and its Retry) cannot be
    given to it; overriding that one method is the narrowest way in, and ``call_api`` keeps its own parsing.
    """

    def __init__(self, session: requests.Session, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.session = session

    def request(self, method, url, query_params=None, headers=None, body=None):  # type: ignore[no-untyped-def]
        auth = ("user", self.api_key) if self.is_basic_auth else None
        if self.is_oauth:
            headers = {**(headers or {}), "Authorization": "Bearer " + self.access_token}
        data = json.dumps(body) if method in ("POST", "PUT", "PATCH") else None
        return self.session.request(
            method, url, params=query_params, headers=headers, auth=auth, data=data, timeout=self.timeout
        )


# -------------------------------------------------------------------- helpers


def checked_campaign_id(campaign_id: str) -> str:
    if not is_valid_campaign_id(campaign_id):
        raise MailchimpApiError(f"campaign id {campaign_id!r} is not a Mailchimp campaign id (letters and digits only)")
    return campaign_id


def _items(page: Any, items_key: str, path: str) -> list[Any]:
    if not isinstance(page, dict):
        raise MailchimpApiError(f"Mailchimp GET {path} returned {type(page).__name__}, expected an object")
    items = page.get(items_key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise MailchimpApiError(f"Mailchimp GET {path}: '{items_key}' is {type(items).__name__}, expected a list")
    return items


def _problem_body(text: Any) -> dict[str, Any]:
    """Mailchimp's application/problem+json error; the client hands it over as a dict or as raw text."""
    if isinstance(text, dict):
        return text
    if isinstance(text, (str, bytes)):
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _format_since(moment: pd.Timestamp) -> str:
    # Whole seconds, rounded down: Mailchimp's filters take ISO 8601 with an offset.
    utc = (
        pd.Timestamp(moment).tz_convert("UTC")
        if pd.Timestamp(moment).tzinfo
        else pd.Timestamp(moment).tz_localize("UTC")
    )
    return utc.floor("s").strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _retryable(status: int) -> bool:
    return status in RETRY_STATUSES


def _network_reason(error: Any) -> str:
    """The kind of network failure the client wrapped, without its text (which holds the URL)."""
    reason = getattr(getattr(error, "args", [None])[0], "reason", None) if isinstance(error, Exception) else None
    return type(reason or error).__name__
