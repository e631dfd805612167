"""The sandbox resources: the Mailchimp account and Salesforce org emulators behind the pipeline's resource types.

Chosen only when Definitions are built (``campaign_pipeline.deployment``); production modules never import
this one. Each is the fake half of an abstract resource (``MailchimpResource``, ``SalesforceResource``), as
Dagster's project_fully_featured pairs a real and a fake client.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, PrivateAttr
from simple_salesforce import Salesforce

from campaign_pipeline.mailchimp.resource import MailchimpResource
from campaign_pipeline.salesforce.resource import SANDBOX_TARGET, SalesforceCallFailed, SalesforceResource

logger = logging.getLogger(__name__)

SANDBOX_SOURCE_MESSAGE = "Mailchimp source: SANDBOX account (no MAILCHIMP_API_KEY set)"
MAILCHIMP_SANDBOX_IDENTITY = "mailchimp:sandbox"
SALESFORCE_SANDBOX_IDENTITY = "salesforce:sandbox"


def sandbox_state_path_default() -> str:
    from campaign_pipeline.storage.database import data_dir

    return str(data_dir() / "sandbox" / "mailchimp_state.json")


def local_sandbox_account(state_path: str, n_members: int, seed: int) -> Any:
    """The sandbox account a keyless deployment reads, shared by every process through its state file.

    Its clock is anchored at the hour the state file is created and then stands still, so its sends look
    recent to the sensor and a re-run with nothing new writes nothing; `campaign-pipeline sandbox
    late-activity` / `new-send` move it on. An existing state file keeps the clock it was created with.
    """
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

    Path(state_path).parent.mkdir(parents=True, exist_ok=True)
    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return SandboxAccount(seed=seed, n_members=n_members, state_path=Path(state_path), anchor=anchor)


@dataclass
class _SandboxHandle:
    base_url: str
    api_key: str
    sandbox: Any
    account: Any


_sandboxes: dict[str, _SandboxHandle] = {}
_sandboxes_lock = threading.Lock()


def _start_mailchimp_sandbox(state_path: str, n_members: int, seed: int) -> _SandboxHandle:
    """One in-process sandbox server per state file and process, stopped when the process exits."""
    with _sandboxes_lock:
        handle = _sandboxes.get(state_path)
        if handle is not None:
            return handle
        from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox

        account = local_sandbox_account(state_path, n_members, seed)
        sandbox = MailchimpSandbox(account)
        sandbox.__enter__()
        atexit.register(sandbox.__exit__, None, None, None)
        handle = _SandboxHandle(base_url=sandbox.base_url, api_key=sandbox.api_key, sandbox=sandbox, account=account)
        _sandboxes[state_path] = handle
        logger.info("%s: serving %s on %s", SANDBOX_SOURCE_MESSAGE, state_path, sandbox.base_url)
        return handle


class SandboxMailchimpResource(MailchimpResource):
    """The sandbox Mailchimp account, served in-process over loopback HTTP to the real client."""

    sandbox_state_path: str | None = Field(
        default=None, description="Sandbox state file; None = <data dir>/sandbox/mailchimp_state.json."
    )
    sandbox_members: int = Field(default=5_000, ge=1, description="Audience size of a freshly generated sandbox.")
    sandbox_seed: int = Field(default=7, description="Seed of a freshly generated sandbox.")

    def _handle(self) -> _SandboxHandle:
        return _start_mailchimp_sandbox(
            self.sandbox_state_path or sandbox_state_path_default(), self.sandbox_members, self.sandbox_seed
        )

    def _connection(self) -> tuple[str, str | None]:
        handle = self._handle()
        return handle.api_key, handle.base_url

    @property
    def uses_sandbox(self) -> bool:
        return True

    @property
    def source_description(self) -> str:
        return SANDBOX_SOURCE_MESSAGE

    def source_identity(self) -> str:
        return MAILCHIMP_SANDBOX_IDENTITY

    def now(self) -> pd.Timestamp:
        """The sandbox clock: a simulated account behaves like one observed at that moment."""
        return pd.Timestamp(self._handle().account.now).tz_convert("UTC")

    @property
    def account(self) -> Any:
        return self._handle().account


class SandboxSalesforceResource(SalesforceResource):
    """The sandbox org: an HTTPS emulator of the REST API on the project's Postgres, seeded once with people."""

    sandbox_schema: str = Field(default="sandbox_salesforce", description="Postgres schema of the sandbox org.")
    sandbox_seed: int = Field(default=7, description="Seed of the sandbox org's Leads and Contacts.")
    sandbox_person_account_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of the seeded Contacts that are Person Accounts instead; above 0 the org has Person "
        "Accounts enabled (an org's setting for good, as in Salesforce).",
    )

    _sandbox_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def is_sandbox(self) -> bool:
        return True

    def describe_target(self) -> str:
        return SANDBOX_TARGET

    def org_identity(self, client: Any) -> str:
        return SALESFORCE_SANDBOX_IDENTITY

    def state_identity(self) -> str:
        return SALESFORCE_SANDBOX_IDENTITY  # no login needed to know it

    @contextlib.contextmanager
    def _connect(self) -> Iterator[tuple[Salesforce, Callable[[], str] | None, str]]:
        from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
        from campaign_pipeline.storage.database import get_engine

        share = self.sandbox_person_account_share
        with SalesforceSandbox(get_engine(), schema=self.sandbox_schema, person_accounts=share > 0) as org:
            with self._sandbox_lock:
                _seed_sandbox_once(org, seed=self.sandbox_seed, person_account_share=share)
            sf = Salesforce(
                instance_url=org.instance_url,
                session_id=org.session_id,
                version=org.api_version,
                session=org.requests_session(),
            )
            yield sf, (lambda: sandbox_session(org)), "the sandbox org refused a new session"


def sandbox_session(org: Any) -> str:
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


def _seed_sandbox_once(org: Any, *, seed: int, person_account_share: float = 0.0) -> None:
    """Give the sandbox org Leads and Contacts for part of the Mailchimp sandbox audience (once per org)."""
    from campaign_pipeline.sandbox.salesforce_api import seed_people

    try:
        from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

        emails = SandboxAccount(seed=seed).audience_emails()
    except Exception as exc:  # the Mailchimp sandbox is optional for the Salesforce side
        logger.warning("sandbox org not seeded from the Mailchimp sandbox audience: %s", exc)
        return
    seed_people(org, emails, seed=seed, person_account_share=person_account_share)
