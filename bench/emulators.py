"""The two sandbox APIs of a benchmark, each served from its own process, so the run's process holds only the run.

``served_emulators`` starts the Mailchimp account (generated, and the org's people seeded from its audience, in
that process) and the Salesforce org (on the same Postgres; several processes on one schema are one org), and
yields a handle that answers what the benchmark asks of them (calls served, the minimum's inputs, peak RSS).
Processes are spawned, not forked, so none inherits the other's or the benchmark's memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from simple_salesforce import Salesforce

from campaign_pipeline.sandbox.resources import SandboxSalesforceResource, sandbox_session

SALESFORCE_SCHEMA = "sandbox_salesforce"
READY_TIMEOUT_SECONDS = 3_600  # generating and seeding a million-member account takes minutes on a loaded machine


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process since its start or last reset, in MB; 0.0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory (VmRSS) of a process now, in MB; 0.0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class RssSampler:
    """This process's RSS sampled every ``interval`` seconds on a thread, with epoch timestamps, so the peak of a
    stretch (one step of a run) can be told afterwards."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), rss_mb()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak_between(self, start: float, end: float) -> float:
        return max((mb for at, mb in self.samples if start <= at <= end), default=0.0)


def reset_peak_rss() -> float:
    """This process's peak RSS so far (MB), then reset it (Linux clear_refs 5), so later peaks are new work's own."""
    peak = peak_rss_mb()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the later peak then includes the earlier one
    return peak


def _mailchimp_main(conn: multiprocessing.connection.Connection, recipients: int, seed: int, url: str) -> None:
    from bench import minimums
    from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
    from campaign_pipeline.sandbox.salesforce_api import seed_people
    from campaign_pipeline.storage import database

    built = time.perf_counter()
    account = SandboxAccount(seed=seed, n_members=recipients, n_regular_campaigns=1, n_automation_emails=0)
    [campaign_id] = account.campaign_ids()
    engine = database.get_engine(url)
    # The org's people: the resource's sandbox org (schema sandbox_salesforce) finds them and seeds none of its own.
    seed_people(engine, account.audience_emails(), seed=seed, coverage=0.6, schema=SALESFORCE_SCHEMA)
    engine.dispose()
    build_seconds = time.perf_counter() - built
    build_peak = reset_peak_rss()
    with MailchimpSandbox(account) as sandbox:
        conn.send(
            {
                "base_url": sandbox.base_url,
                "api_key": sandbox.api_key,
                "campaign_id": campaign_id,
                "build_seconds": round(build_seconds, 2),
                "build_peak_rss_mb": build_peak,
            }
        )
        while True:
            command = conn.recv()
            if command == "calls":
                conn.send(sandbox.calls())
            elif command == "min_calls":
                spec = account.spec(campaign_id)
                assert spec is not None
                activity = sandbox.routes.email_activity({"count": "1", "offset": "0"}, campaign_id)["total_items"]
                unsubscribed = len(account.unsubscribed_listing(spec))
                conn.send(minimums.mailchimp_calls(recipients, activity, unsubscribed, single_calls=1))
            else:
                conn.send(None)
                return


def _salesforce_main(conn: multiprocessing.connection.Connection, url: str) -> None:
    from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
    from campaign_pipeline.storage import database

    with SalesforceSandbox(database.get_engine(url), schema=SALESFORCE_SCHEMA) as org:
        conn.send(
            {
                "instance_url": org.instance_url,
                "session_id": org.session_id,
                "ca_path": org.ca_path,
                "api_version": org.api_version,
                "username": org.username,
            }
        )
        conn.recv()
        conn.send(None)


class _Child:
    def __init__(self, name: str, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
        self.process.start()
        child_conn.close()
        self.name = name

    def receive(self, timeout: float = 600) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the {self.name} emulator process did not answer in {timeout:.0f} s")
        return self.conn.recv()

    def ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.receive()

    @property
    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.process.pid or 0)

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError, RuntimeError):
                self.ask("stop")
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)


@dataclass
class Emulators:
    mailchimp: _Child
    salesforce: _Child
    mailchimp_info: dict[str, Any]
    salesforce_info: dict[str, Any]

    def mailchimp_calls(self) -> int:
        return int(self.mailchimp.ask("calls"))

    def mailchimp_min_calls(self) -> int:
        return int(self.mailchimp.ask("min_calls"))

    def peak_rss_mb(self) -> dict[str, float]:
        return {"mailchimp": self.mailchimp.peak_rss_mb, "salesforce": self.salesforce.peak_rss_mb}

    def salesforce_resource(self) -> ServedSandboxSalesforceResource:
        info = self.salesforce_info
        return ServedSandboxSalesforceResource(
            sandbox_schema=SALESFORCE_SCHEMA,
            api_version=info["api_version"],
            served_instance_url=info["instance_url"],
            served_session_id=info["session_id"],
            served_ca_path=info["ca_path"],
            served_username=info["username"],
        )


@contextlib.contextmanager
def served_emulators(recipients: int, seed: int, database_url: str) -> Iterator[Emulators]:
    """Both emulators in their own processes, stopped on the way out."""
    mailchimp = _Child("mailchimp", _mailchimp_main, recipients, seed, database_url)
    salesforce: _Child | None = None
    try:
        mailchimp_info = mailchimp.receive(READY_TIMEOUT_SECONDS)
        salesforce = _Child("salesforce", _salesforce_main, database_url)
        salesforce_info = salesforce.receive()
        yield Emulators(mailchimp, salesforce, mailchimp_info, salesforce_info)
    finally:
        if salesforce is not None:
            salesforce.stop()
        mailchimp.stop()


class ServedSandboxSalesforceResource(SandboxSalesforceResource):
    """The sandbox org as the pipeline's resource sees it, but served by another process: same identity and
    behaviour as ``SandboxSalesforceResource``, without the emulator (and its memory) inside the run."""

    served_instance_url: str
    served_session_id: str
    served_ca_path: str
    served_username: str

    def _served_session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.served_ca_path
        session.trust_env = False
        return session

    @property
    def token_url(self) -> str:
        return f"{self.served_instance_url}/services/oauth2/token"

    @property
    def username(self) -> str:
        return self.served_username

    def requests_session(self) -> requests.Session:
        return self._served_session()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[tuple[Salesforce, Callable[[], str] | None, str]]:
        sf = Salesforce(
            instance_url=self.served_instance_url,
            session_id=self.served_session_id,
            version=self.api_version,
            session=self._served_session(),
        )
        yield sf, (lambda: sandbox_session(self)), "the sandbox org refused a new session"
