"""The Salesforce resource: simple-salesforce with retries, an API-call budget and a stop before the daily quota.

Credentials come from the resource's fields, or, for fields left unset, from the environment:

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

With none of them set the target is the **sandbox org**: an in-process emulator of the Salesforce REST API on
the project's Postgres, seeded with Leads and Contacts for the Mailchimp sandbox audience; logs and metadata say
"Salesforce target: SANDBOX org (no credentials set)". Secrets are never logged or put into errors or metadata.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
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

logger = logging.getLogger(__name__)

SANDBOX_TARGET = "Salesforce target: SANDBOX org (no credentials set)"
DEFAULT_API_VERSION = "62.0"
# Salesforce rejects request URIs over 16,384 characters; the encoded query stays under this, leaving room for the path.
MAX_QUERY_URI_CHARS = 15_000
TRANSIENT_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW"})


class SalesforceStopped(RuntimeError):
    """The run must stop writing: the API-call budget is spent or the org's daily quota is nearly used up.

    Work written before the stop is already in the ledger; the next run carries on from there.
    """


class SalesforceCallFailed(RuntimeError):
    """A call failed after retries; the message names the call and Salesforce's error, never a credential."""

    def __init__(self, message: str, *, error_code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status


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


def _error_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("message", ""))[:500]
    return str(content)[:500]


class SalesforceClient:
    """One run's connection: every API call goes through ``call`` for retries, budget and quota checks."""

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
        self.stats = CallStats()
        self._describes: dict[str, dict] = {}
        self._lock = threading.Lock()

    # -- the one gate every call passes -------------------------------------------------------------------------
    def call(self, kind: str, what: str, send: Callable[[], Any], *, idempotent: bool = True) -> Any:
        """Run ``send`` (one HTTP request) counting it as ``kind``; retry transient failures with backoff.

        Non-idempotent calls (creates) are not retried after a timeout, whose outcome is unknown: the caller
        leaves those records pending and the next run looks them up instead of creating twice.
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
                    raise SalesforceCallFailed(
                        f"{what}: Salesforce session expired (INVALID_SESSION_ID) and could not be renewed; "
                        "set fresh credentials (SALESFORCE_SESSION_ID or a username/password login)",
                        error_code="INVALID_SESSION_ID",
                        status=401,
                    ) from exc
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
                transient = exc.status >= 500 or _error_code(exc) in TRANSIENT_RECORD_ERRORS
                if not transient or attempt >= self.max_retries:
                    raise self._failed(what, exc) from exc
            except (requests.Timeout, requests.ConnectionError) as exc:
                if not idempotent or attempt >= self.max_retries:
                    raise SalesforceCallFailed(
                        f"{what}: no answer from Salesforce ({type(exc).__name__}) after {attempt + 1} attempt(s)",
                        error_code="TIMEOUT",
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

    def _failed(self, what: str, exc: SalesforceError) -> SalesforceCallFailed:
        code = _error_code(exc)
        return SalesforceCallFailed(
            f"{what}: Salesforce answered {exc.status} {code or ''} {_error_message(exc)}".strip(),
            error_code=code,
            status=exc.status,
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
    def query_all(self, soql: str) -> list[dict]:
        """All rows of a SOQL query, following nextRecordsUrl; each page is one read call."""
        page = self.call("read", "SOQL query", lambda: self.sf.query(soql, timeout=self.timeout_seconds))
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


class SalesforceResource(dg.ConfigurableResource):
    """Salesforce connection settings; unset fields fall back to the SALESFORCE_* environment variables.

    ``open_client`` yields a ``SalesforceClient`` for one run: the live org when credentials are set (password,
    JWT bearer, or instance URL + session id), otherwise the in-process sandbox org.
    """

    username: str | None = Field(default=None, description="Env SALESFORCE_USERNAME.")
    password: str | None = Field(default=None, description="Env SALESFORCE_PASSWORD.")
    security_token: str | None = Field(default=None, description="Env SALESFORCE_SECURITY_TOKEN.")
    consumer_key: str | None = Field(default=None, description="Env SALESFORCE_CONSUMER_KEY (JWT bearer login).")
    private_key_file: str | None = Field(
        default=None, description="Env SALESFORCE_PRIVATE_KEY_FILE (JWT bearer login)."
    )
    private_key: str | None = Field(
        default=None, description="Env SALESFORCE_PRIVATE_KEY (PEM text, JWT bearer login)."
    )
    instance_url: str | None = Field(default=None, description="Env SALESFORCE_INSTANCE_URL.")
    session_id: str | None = Field(default=None, description="Env SALESFORCE_SESSION_ID.")
    domain: str | None = Field(default=None, description="Env SALESFORCE_DOMAIN: login, test or a My Domain prefix.")
    api_version: str = Field(default=DEFAULT_API_VERSION, description="REST API version.")
    timeout_seconds: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(default=4, ge=0, le=10, description="Retries of a transient failure.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles each retry.")
    sandbox_schema: str = Field(default="sandbox_salesforce", description="Postgres schema of the sandbox org.")
    sandbox_seed: int = Field(default=7, description="Seed of the sandbox org's Leads and Contacts.")

    _sandbox_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _setting(self, name: str) -> str | None:
        value = getattr(self, name)
        if value:
            return value
        from_env = os.environ.get(f"SALESFORCE_{name.upper()}", "").strip()
        return from_env or None

    def login_method(self) -> str | None:
        """Which login the settings describe, or None for the sandbox org. Never returns a secret."""
        if self._setting("instance_url") and self._setting("session_id"):
            return "session"
        if (
            self._setting("username")
            and self._setting("consumer_key")
            and (self._setting("private_key_file") or self._setting("private_key"))
        ):
            return "jwt"
        if self._setting("username") and self._setting("password"):
            return "password"
        partial = [
            name
            for name in ("username", "password", "security_token", "instance_url", "session_id", "consumer_key")
            if self._setting(name)
        ]
        if partial:
            raise dg.DagsterInvalidConfigError(
                "Salesforce credentials are incomplete: set SALESFORCE_USERNAME + SALESFORCE_PASSWORD "
                "(+ SALESFORCE_SECURITY_TOKEN), or SALESFORCE_USERNAME + SALESFORCE_CONSUMER_KEY + "
                "SALESFORCE_PRIVATE_KEY_FILE, or SALESFORCE_INSTANCE_URL + SALESFORCE_SESSION_ID; "
                f"only these are set: {', '.join('SALESFORCE_' + name.upper() for name in partial)}",
                [],
                None,
            )
        return None

    def describe_target(self) -> str:
        method = self.login_method()
        if method is None:
            return SANDBOX_TARGET
        domain = self._setting("domain") or "login"
        return f"Salesforce target: live org ({method} login, domain {domain})"

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
        method = self.login_method()
        settings: dict[str, Any] = dict(
            api_call_budget=api_call_budget,
            limit_usage_stop_fraction=limit_usage_stop_fraction,
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
            timeout_seconds=self.timeout_seconds,
        )
        if method is None:
            with self._sandbox_org() as org:
                sf = Salesforce(
                    instance_url=org.instance_url,
                    session_id=org.session_id,
                    version=org.api_version,
                    session=org.requests_session(),
                )
                log.info(SANDBOX_TARGET)
                yield SalesforceClient(
                    sf,
                    target=SANDBOX_TARGET,
                    is_sandbox=True,
                    reauthenticate=lambda: _sandbox_session(org),
                    **settings,
                )
            return
        sf = self._login(method)
        target = self.describe_target()
        log.info(target)
        # Password and JWT logins renew themselves inside simple-salesforce; a bare session id cannot be renewed.
        yield SalesforceClient(sf, target=target, is_sandbox=False, reauthenticate=None, **settings)

    def _login(self, method: str) -> Salesforce:
        domain = self._setting("domain") or "login"
        try:
            if method == "session":
                return Salesforce(
                    instance_url=self._setting("instance_url"),
                    session_id=self._setting("session_id"),
                    version=self.api_version,
                )
            if method == "jwt":
                return Salesforce(
                    username=self._setting("username"),
                    consumer_key=self._setting("consumer_key"),
                    privatekey_file=self._setting("private_key_file"),
                    privatekey=None if self._setting("private_key_file") else self._setting("private_key"),
                    domain=domain,
                    version=self.api_version,
                )
            return Salesforce(
                username=self._setting("username"),
                password=self._setting("password"),
                security_token=self._setting("security_token") or "",
                domain=domain,
                version=self.api_version,
            )
        except SalesforceError as exc:
            # The exception text can echo the request; say only which login failed and where.
            raise SalesforceCallFailed(
                f"Salesforce {method} login to domain {domain!r} failed ({type(exc).__name__}); "
                "check the SALESFORCE_* credentials and SALESFORCE_DOMAIN (login for production, test for sandboxes)",
                error_code="LOGIN_FAILED",
            ) from None

    @contextlib.contextmanager
    def _sandbox_org(self) -> Iterator[Any]:
        from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
        from campaign_pipeline.storage.database import get_engine

        engine = get_engine()
        with SalesforceSandbox(engine, schema=self.sandbox_schema) as org:
            with self._sandbox_lock:
                _seed_sandbox_once(org, seed=self.sandbox_seed)
            yield org


def _sandbox_session(org: Any) -> str:
    """A fresh session from the sandbox org's OAuth token endpoint, as a password login renews a live one."""
    from campaign_pipeline.sandbox.salesforce_api import DEFAULT_PASSWORD

    response = org.requests_session().post(
        org.token_url,
        data={"grant_type": "password", "username": org.username, "password": DEFAULT_PASSWORD},
        timeout=30,
    )
    if response.status_code != 200:
        raise SalesforceCallFailed(
            f"sandbox org refused a new session ({response.status_code})", error_code="LOGIN_FAILED"
        )
    return response.json()["access_token"]


def _seed_sandbox_once(org: Any, *, seed: int) -> None:
    """Give the sandbox org Leads and Contacts for part of the Mailchimp sandbox audience (once per org)."""
    from campaign_pipeline.sandbox.salesforce_api import seed_people

    try:
        from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

        emails = SandboxAccount(seed=seed).audience_emails()
    except Exception as exc:  # the Mailchimp sandbox is optional for the Salesforce side
        logger.warning("sandbox org not seeded from the Mailchimp sandbox audience: %s", exc)
        return
    seed_people(org, emails, seed=seed)
