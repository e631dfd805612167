"""The live org: its login bound from SALESFORCE_* (password, JWT bearer or session id) and the resource that uses it.

Secrets are never logged or put into errors or metadata.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import requests
from pydantic import Field
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from campaign_pipeline.salesforce.resource import SalesforceLoginFailed, SalesforceResource


class SalesforceCredentials(dg.ConfigurableResource):
    """A live org's login, bound from SALESFORCE_* (``dg.EnvVar``) when Definitions are built.

    A nested resource, so run config for the other settings (timeouts, retries) never replaces it.
    """

    username: str | None = Field(default=None, description="SALESFORCE_USERNAME.")
    password: str | None = Field(default=None, repr=False, description="SALESFORCE_PASSWORD.")
    security_token: str | None = Field(default=None, repr=False, description="SALESFORCE_SECURITY_TOKEN.")
    consumer_key: str | None = Field(default=None, description="SALESFORCE_CONSUMER_KEY (JWT bearer login).")
    private_key_file: str | None = Field(default=None, description="SALESFORCE_PRIVATE_KEY_FILE (JWT bearer login).")
    private_key: str | None = Field(default=None, repr=False, description="SALESFORCE_PRIVATE_KEY (PEM text, JWT).")
    instance_url: str | None = Field(default=None, description="SALESFORCE_INSTANCE_URL.")
    session_id: str | None = Field(default=None, repr=False, description="SALESFORCE_SESSION_ID.")
    domain: str | None = Field(default=None, description="SALESFORCE_DOMAIN: login, test or a My Domain prefix.")

    def setting(self, name: str) -> str | None:
        value = (getattr(self, name) or "").strip()
        return value or None

    def variables_in_use(self) -> list[str]:
        """The SALESFORCE_* names that are set (names only: for messages that must never hold a secret)."""
        return [f"SALESFORCE_{name.upper()}" for name in CREDENTIAL_FIELDS if self.setting(name)]


CREDENTIAL_FIELDS = (
    "username",
    "password",
    "security_token",
    "consumer_key",
    "private_key_file",
    "private_key",
    "instance_url",
    "session_id",
    "domain",
)


def login_method(credentials: SalesforceCredentials) -> str | None:
    """Which login the credentials describe, or None when none is set. Never returns a secret."""
    setting = credentials.setting
    if setting("instance_url") and setting("session_id"):
        return "session"
    if setting("username") and setting("consumer_key") and (setting("private_key_file") or setting("private_key")):
        return "jwt"
    if setting("username") and setting("password"):
        return "password"
    partial = [
        name
        for name in ("username", "password", "security_token", "instance_url", "session_id", "consumer_key")
        if setting(name)
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


class LiveSalesforceResource(SalesforceResource):
    """A real org: password, JWT bearer, or instance URL + session id login."""

    credentials: SalesforceCredentials

    def login_method(self) -> str:
        method = login_method(self.credentials)
        if method is None:
            raise dg.DagsterInvalidConfigError(
                "No Salesforce credentials are set: set SALESFORCE_USERNAME + SALESFORCE_PASSWORD (+ "
                "SALESFORCE_SECURITY_TOKEN), a JWT login or SALESFORCE_INSTANCE_URL + SALESFORCE_SESSION_ID",
                [],
                None,
            )
        return method

    def describe_target(self) -> str:
        method = self.login_method()
        if method == "session":
            return f"Salesforce target: live org ({method} login, instance {self.credentials.setting('instance_url')})"
        return f"Salesforce target: live org ({method} login, domain {self.credentials.setting('domain') or 'login'})"

    def login_hint(self) -> str:
        setting = self.credentials.setting
        if self.login_method() == "session":
            where = f"SALESFORCE_INSTANCE_URL={setting('instance_url')}"
        else:
            domain = setting("domain") or "login"
            where = f"SALESFORCE_DOMAIN={domain} (https://{domain}.salesforce.com)"
        return (
            f"; check {where}: 'login' for production, 'test' for sandboxes, or your My Domain prefix; "
            f"variables in use: {', '.join(self.credentials.variables_in_use())}"
        )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[tuple[Salesforce, Callable[[], str] | None, str]]:
        method = self.login_method()
        sf = self._login(method)
        # Password and JWT logins renew themselves inside simple-salesforce; a bare session id cannot be renewed.
        hint = (
            "SALESFORCE_SESSION_ID cannot be renewed: set a fresh one, or use a username/password or JWT login "
            "that renews itself"
            if method == "session"
            else "the login could not renew it; check the SALESFORCE_* credentials"
        )
        yield sf, None, hint

    def _login(self, method: str) -> Salesforce:
        setting = self.credentials.setting
        domain = setting("domain") or "login"
        hint = self.login_hint()
        # A session of our own, so the login itself (SOAP or OAuth) goes through the same transport settings.
        session = requests.Session()
        try:
            if method == "session":
                return Salesforce(
                    instance_url=setting("instance_url"),
                    session_id=setting("session_id"),
                    version=self.api_version,
                    session=session,
                )
            if method == "jwt":
                return Salesforce(
                    username=setting("username"),
                    consumer_key=setting("consumer_key"),
                    privatekey_file=setting("private_key_file"),
                    privatekey=None if setting("private_key_file") else setting("private_key"),
                    domain=domain,
                    version=self.api_version,
                    session=session,
                )
            return Salesforce(
                username=setting("username"),
                password=setting("password"),
                security_token=setting("security_token") or "",
                domain=domain,
                version=self.api_version,
                session=session,
            )
        except SalesforceError as exc:
            # The exception text can echo the request; say only which login failed and where.
            raise SalesforceLoginFailed(
                f"Salesforce {method} login failed: the org refused it ({type(exc).__name__}){hint}",
                error_code="LOGIN_FAILED",
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SalesforceLoginFailed(
                f"Salesforce {method} login failed: cannot reach Salesforce ({_network_failure(exc)}){hint}",
                error_code="LOGIN_FAILED",
            ) from None


def _network_failure(exc: Exception) -> str:
    """The innermost cause's class (NameResolutionError, ConnectTimeoutError...), never its text (it holds URLs)."""
    cause: Any = exc
    for _ in range(5):
        inner = getattr(cause, "reason", None) or (cause.args[0] if getattr(cause, "args", None) else None)
        if not isinstance(inner, BaseException):
            break
        cause = inner
    return type(cause).__name__
