"""The Salesforce resource: simple-salesforce on one retrying transport, an API-call budget and a quota stop.

``SalesforceResource`` is abstract: ``LiveSalesforceResource`` (``salesforce.live``) logs in to a real org with credentials bound
from the environment when Definitions are built (``campaign_pipeline.deployment``):

=============================  =====================================================================
SALESFORCE_USERNAME            user name (password login and JWT bearer login)
SALESFORCE_PASSWORD            password (password login)
SALESFORCE_SECURITY_TOKEN      security token appended by Salesforce to the password (password login)
SALESFORCE_CONSUMER_KEY        connected app consumer key (JWT bearer login)
SALESFORCE_PRIVATE_KEY_FILE    path to the connected app's private key (JWT bearer login)
SALESFORCE_PRIVATE_KEY         the private key itself, PEM text (JWT bearer login, instead of the file)
SALESFORCE_INSTANCE_URL        https://yourorg.my.salesforce.com (with SALESFORCE_SESSION_ID)
SALESFORCE_SESSION_ID          an access token (with SALESFORCE_INSTANCE_URL)
SALESFORCE_DOMAIN              login (production, default), test (sandboxes) or a My Domain prefix
=============================  =====================================================================

The sandbox org's resource lives in ``campaign_pipeline.sandbox.resources``; nothing here knows the emulator.
Secrets are never logged or put into errors or metadata.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import requests
from pydantic import Field, PrivateAttr
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from urllib3.exceptions import NewConnectionError

from campaign_pipeline.transport import RetryPolicy, mount_retries

logger = logging.getLogger(__name__)

SANDBOX_TARGET = "Salesforce target: SANDBOX org (no credentials set)"
# Writes the transport may repeat after a lost answer: updates and upserts by external ID land the same record
# twice over. POST (creates, Bulk job creation) and PUT (a Bulk upload appends its data) are never repeated.
SALESFORCE_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PATCH", "DELETE"})
# An org Id is 15 or 18 characters starting 00D; session ids (access tokens) start with the org's 15.
_ORG_ID = re.compile(r"^00D[0-9A-Za-z]{12}([0-9A-Za-z]{3})?$")
DEFAULT_API_VERSION = "62.0"
# Salesforce rejects request URIs over 16,384 characters; the encoded query stays under this, leaving room for the path.
MAX_QUERY_URI_CHARS = 15_000
TRANSIENT_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW"})


class SalesforceStopped(RuntimeError):
    """The run must stop writing: the API-call budget is spent or the org's daily quota is nearly used up.

    Work written before the stop is already in the ledger; the next run carries on from there.
    """


class SalesforceSessionLost(SalesforceStopped):
    """The session expired and cannot be renewed (a session-id login): nothing more can be written this run."""


class SalesforceCallFailed(RuntimeError):
    """A call failed after retries; the message names the call and Salesforce's error, never a credential.

    ``outcome_unknown`` is True when a non-idempotent call (a create, a Bulk job creation or upload) may have
    reached Salesforce and been committed: the caller must not send it again, only look it up.
    """

    def __init__(
        self, message: str, *, error_code: str = "", status: int | None = None, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status
        self.outcome_unknown = outcome_unknown


class SalesforceLoginFailed(SalesforceCallFailed):
    """The org cannot be reached or refuses the credentials; the message names the variables to check."""


@dataclass
class CallStats:
    """API calls a run made, by kind (read / write / auth), plus retries and the org's reported usage."""

    calls: Counter = field(default_factory=Counter)
    retries: int = 0
    reauths: int = 0
    org_usage: tuple[int, int] | None = None

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", ""))
    if isinstance(content, dict):
        return str(content.get("errorCode", ""))
    return ""


def _never_sent(exc: Exception) -> bool:
    """True when the request cannot have reached Salesforce: the connection itself was never made."""
    cause: Any = exc
    for _ in range(4):
        if isinstance(cause, NewConnectionError):
            return True
        cause = getattr(cause, "reason", None) or (cause.args[0] if getattr(cause, "args", None) else None)
        if cause is None:
            return False
    return False


def _error_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("message", ""))[:500]
    return str(content)[:500]


class SalesforceClient:
    """One run's connection: every API call goes through ``call`` for the budget, quota and session checks.

    The HTTP retries (5xx, 429, timeouts, connection errors; backoff with jitter, Retry-After) are the transport's,
    mounted here on the simple-salesforce session: one place, and never a repeat of a create or a Bulk upload.
    """

    def __init__(
        self,
        sf: Salesforce,
        *,
        target: str,
        is_sandbox: bool,
        api_call_budget: int = 5000,
        limit_usage_stop_fraction: float = 0.9,
        max_retries: int = 4,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 60.0,
        reauthenticate: Callable[[], str] | None = None,
        renewal_hint: str = "set fresh credentials (SALESFORCE_SESSION_ID, or a username/password login)",
        org_id: str | None = None,
        describes: dict[str, dict] | None = None,
    ) -> None:
        self.sf = sf
        self.target = target
        self.is_sandbox = is_sandbox
        self.api_call_budget = api_call_budget
        self.limit_usage_stop_fraction = limit_usage_stop_fraction
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._reauthenticate = reauthenticate
        self._renewal_hint = renewal_hint
        self.stats = CallStats()
        # Set when the session expired beyond renewal: the run must fail with this reason, not report success.
        self.session_lost: str | None = None
        self._org_id = org_id
        # Shared by the clients of one run (the resource's), so each sObject is described once per run.
        self._describes: dict[str, dict] = {} if describes is None else describes
        self._lock = threading.Lock()
        policy = RetryPolicy(
            retries=max_retries,
            backoff_seconds=backoff_seconds,
            backoff_max_seconds=max(backoff_seconds * 16, 1.0),
            jitter_seconds=backoff_seconds,
            idempotent_methods=SALESFORCE_IDEMPOTENT_METHODS,
        )
        mount_retries(sf.session, policy, observer=self._observe_retry)

    def _observe_retry(self, method: str, url: str, status: int | None, error: Exception | None) -> None:
        with self._lock:
            self.stats.retries += 1
            self.stats.calls["retry"] += 1
        logger.info(
            "Salesforce %s: %s; the transport retries",
            method,
            f"HTTP {status}" if status else f"no answer ({type(error).__name__})",
        )

    @property
    def org_id(self) -> str:
        """Which org this client talks to, without a call: what keeps one org's state (mirror) from another's.

        Given explicitly, or the Organization Id that prefixes every Salesforce access token ("00D...!..."),
        or else the instance's host.
        """
        if self._org_id:
            return self._org_id
        prefix = (self.sf.session_id or "").split("!", 1)[0]
        if _ORG_ID.match(prefix):
            return prefix[:15]
        return f"instance:{str(self.sf.sf_instance).lower()}"

    # -- the one gate every call passes -------------------------------------------------------------------------
    def call(self, kind: str, what: str, send: Callable[[], Any], *, idempotent: bool = True) -> Any:
        """Run ``send`` (one HTTP request) counting it as ``kind``.

        The transport has already retried what is safe to retry. Left here: an expired session (renewed once when
        the login allows it, else the run stops), REQUEST_LIMIT_EXCEEDED (the run stops), UNABLE_TO_LOCK_ROW on a
        whole call (retried with backoff), and the verdict on a call that got no usable answer: for a
        non-idempotent call (``idempotent=False``) it is ``outcome_unknown``, left to the caller's lookup.
        """
        reauthed = False
        attempt = 0
        while True:
            with self._lock:
                self._check_budget(what)
                self.stats.calls[kind] += 1
            expired_session = self.sf.session_id
            try:
                result = send()
            except SalesforceExpiredSession as exc:
                if reauthed or self._reauthenticate is None:
                    self.session_lost = (
                        f"{what}: the Salesforce session expired (INVALID_SESSION_ID) and cannot be renewed; the run "
                        f"stopped before writing anything more: {self._renewal_hint}"
                    )
                    raise SalesforceSessionLost(self.session_lost) from exc
                with self._lock:
                    # Parallel reads may all see the expiry; renew once, the others retry with the new session.
                    if self.sf.session_id == expired_session:
                        self._renew_session()
                reauthed = True
                continue
            except SalesforceRefusedRequest as exc:
                if _error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                    raise SalesforceStopped(
                        f"{what}: Salesforce refused the call with REQUEST_LIMIT_EXCEEDED (the org's API quota "
                        "is used up); stopped cleanly, the next run carries on"
                    ) from exc
                raise self._failed(what, exc) from exc
            except (SalesforceGeneralError, SalesforceMalformedRequest) as exc:
                locked = _error_code(exc) in TRANSIENT_RECORD_ERRORS
                if not locked or attempt >= self.max_retries:
                    raise self._failed(what, exc, outcome_unknown=not idempotent and exc.status >= 500) from exc
            except (requests.Timeout, requests.ConnectionError) as exc:
                never_sent = _never_sent(exc)
                raise SalesforceCallFailed(
                    f"{what}: no answer from Salesforce ({type(exc).__name__})"
                    + ("" if idempotent or never_sent else "; it may have been carried out, so it is not sent again"),
                    error_code="TIMEOUT",
                    outcome_unknown=not idempotent and not never_sent,
                ) from exc
            else:
                self._note_usage()
                return result
            attempt += 1
            self.stats.retries += 1
            self.sleep(self.backoff_seconds * (2 ** (attempt - 1)))

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def _failed(self, what: str, exc: SalesforceError, *, outcome_unknown: bool = False) -> SalesforceCallFailed:
        code = _error_code(exc)
        return SalesforceCallFailed(
            f"{what}: Salesforce answered {exc.status} {code or ''} {_error_message(exc)}".strip()
            + ("; it may have been carried out, so it is not sent again" if outcome_unknown else ""),
            error_code=code,
            status=exc.status,
            outcome_unknown=outcome_unknown,
        )

    def _check_budget(self, what: str) -> None:
        if self.stats.total >= self.api_call_budget:
            raise SalesforceStopped(
                f"{what}: the run's API-call budget of {self.api_call_budget} calls is spent "
                "(sync.api_call_budget in the sync profile); stopped cleanly, the next run carries on"
            )
        if self.stats.org_usage is not None:
            used, total = self.stats.org_usage
            if total and used / total >= self.limit_usage_stop_fraction:
                raise SalesforceStopped(
                    f"{what}: the org has used {used} of its {total} daily API requests, past the stop fraction "
                    f"{self.limit_usage_stop_fraction:.0%} (sync.limit_usage_stop_fraction); stopped cleanly"
                )

    def _note_usage(self) -> None:
        usage = self.sf.api_usage.get("api-usage") if self.sf.api_usage else None
        if usage is not None:
            self.stats.org_usage = (int(usage.used), int(usage.total))

    def _renew_session(self) -> None:
        assert self._reauthenticate is not None
        self.stats.calls["auth"] += 1
        self.stats.reauths += 1
        self.sf.session_id = self._reauthenticate()
        self.sf._generate_headers()  # simple-salesforce rebuilds its Authorization header from session_id
        logger.info("Salesforce session renewed after INVALID_SESSION_ID")

    def note_limit_header(self, header: str | None) -> None:
        """Read the org's usage from a Sforce-Limit-Info header of a call made outside simple-salesforce's REST."""
        if header:
            usage = Salesforce.parse_api_usage(header).get("api-usage")
            if usage is not None:
                self.stats.org_usage = (int(usage.used), int(usage.total))

    # -- REST helpers -------------------------------------------------------------------------------------------
    def query_all(self, soql: str, *, include_deleted: bool = False) -> list[dict]:
        """All rows of a SOQL query, following nextRecordsUrl; each page is one read call.

        ``include_deleted`` asks the queryAll resource, which also returns deleted and archived records.
        """
        page = self.call(
            "read",
            "SOQL queryAll" if include_deleted else "SOQL query",
            lambda: self.sf.query(soql, include_deleted=include_deleted, timeout=self.timeout_seconds),
        )
        records = list(page["records"])
        while not page.get("done", True):
            next_url: str = page["nextRecordsUrl"]

            def next_page(url: str = next_url) -> Any:
                return self.sf.query_more(url, identifier_is_url=True, timeout=self.timeout_seconds)

            page = self.call("read", "SOQL query (next page)", next_page)
            records.extend(page["records"])
        for record in records:
            record.pop("attributes", None)
        return records

    def describe(self, sobject: str) -> dict:
        """The sObject's describe, fetched once per run."""
        if sobject not in self._describes:
            self._describes[sobject] = self.call(
                "read",
                f"describe {sobject}",
                lambda: self.sf.restful(f"sobjects/{sobject}/describe", timeout=self.timeout_seconds),
            )
        return self._describes[sobject]

    def rest(self, kind: str, what: str, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        """A call to a REST path under /services/data/vXX.X/ (sObject Collections, jobs...)."""
        return self.call(
            kind,
            what,
            lambda: self.sf.restful(path, method=method, timeout=self.timeout_seconds, **kwargs),
            idempotent=idempotent,
        )

    def raw(self, kind: str, what: str, method: str, path: str, *, idempotent: bool = True, **kwargs: Any):
        """A call whose body is not JSON (Bulk API 2.0 CSV); returns the requests.Response."""
        url = self.sf.base_url + path
        response = self.call(
            kind,
            what,
            lambda: self.sf._call_salesforce(method, url, name=path, timeout=self.timeout_seconds, **kwargs),
            idempotent=idempotent,
        )
        return response


class SalesforceResource(dg.ConfigurableResource, ABC):
    """Where the pipeline writes: ``open_client`` yields a ``SalesforceClient`` for one run.

    Subclasses connect (``_connect``); this class holds what every target shares: API version, timeout and the
    transport's retry settings, and the login check a run makes before any Mailchimp work.
    """

    api_version: str = Field(default=DEFAULT_API_VERSION, description="REST API version.")
    timeout_seconds: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(default=4, ge=0, le=10, description="Retries of a transient failure.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="Retry delay; doubles each retry, plus jitter.")

    _checked_identity: str = PrivateAttr(default="")
    _opened_identity: str = PrivateAttr(default="")
    # Describes fetched by this resource's clients. Dagster gives each run its own copy of a resource, shared by
    # the run's steps, so the preflight's describes serve the push too and a new run describes afresh.
    _describes: dict[str, dict] = PrivateAttr(default_factory=dict)

    @abstractmethod
    def describe_target(self) -> str:
        """One line for logs, metadata and the job description: which org this writes to (never a secret)."""

    @abstractmethod
    def _connect(self) -> contextlib.AbstractContextManager[tuple[Salesforce, Callable[[], str] | None, str]]:
        """A simple-salesforce client, how to renew its session (None = cannot), and what to say when it cannot."""

    @property
    def is_sandbox(self) -> bool:
        return False

    @contextlib.contextmanager
    def open_client(
        self,
        *,
        api_call_budget: int = 5000,
        limit_usage_stop_fraction: float = 0.9,
        log: logging.Logger | Any | None = None,
    ) -> Iterator[SalesforceClient]:
        """A client for one run (budget and stop fraction come from the sync profile's sync settings)."""
        log = log or logger
        with self._connect() as (sf, reauthenticate, renewal_hint):
            target = self.describe_target()
            log.info(target)
            client = SalesforceClient(
                sf,
                target=target,
                is_sandbox=self.is_sandbox,
                api_call_budget=api_call_budget,
                limit_usage_stop_fraction=limit_usage_stop_fraction,
                max_retries=self.max_retries,
                backoff_seconds=self.backoff_seconds,
                timeout_seconds=self.timeout_seconds,
                reauthenticate=reauthenticate,
                renewal_hint=renewal_hint,
                describes=self._describes,
            )
            self._opened_identity = self.org_identity(client)
            yield client

    def state_identity(self) -> str:
        """Which org this deployment's state (ledger rows) belongs to: ``salesforce:<org id>`` (or the sandbox's).

        Known once any client of this resource was opened (the run's preflight opens one); else logs in once.
        """
        return self._opened_identity or self.check_login()

    def org_identity(self, client: SalesforceClient) -> str:
        """Which org the state (ledger rows) belongs to: ``salesforce:<org id>``."""
        return f"salesforce:{client.org_id or 'unknown'}"

    def check_login(self, log: logging.Logger | Any | None = None) -> str:
        """Log in and make one cheap call (the org's limits); return the org identity or raise a clear error.

        Runs before any Mailchimp work, so a wrong domain or password fails the run in seconds, naming the
        variables to check. Checked once per resource instance (per process).
        """
        if self._checked_identity:
            return self._checked_identity
        with self.open_client(log=log) as client:
            try:
                client.call("read", "login check (limits)", lambda: client.sf.limits(timeout=client.timeout_seconds))
            except SalesforceCallFailed as failure:
                raise self._login_failure(f"answered the login check with an error: {failure}") from None
            self._checked_identity = self.org_identity(client)
        return self._checked_identity

    def _login_failure(self, reason: str) -> SalesforceLoginFailed:
        return SalesforceLoginFailed(f"{self.describe_target()} {reason}{self.login_hint()}", error_code="LOGIN_FAILED")

    def login_hint(self) -> str:
        """What to check when the login fails: the variables in play (names and non-secret values only)."""
        return ""
