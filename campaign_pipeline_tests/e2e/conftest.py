"""Fixtures for end-to-end tests: a `dagster dev` on the session's test Postgres, and headless Debian Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_pipeline.storage import database

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Credentials for live accounts (MAILCHIMP_API_KEY, SALESFORCE_*) never reach the processes a test starts.
LIVE_ENV_PREFIXES = ("MAILCHIMP_", "SALESFORCE_")
PROFILE_ENV = "CAMPAIGN_PIPELINE_PROFILE"
SERVER_START_TIMEOUT_S = 180.0
CODE_LOCATION_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def instance_yaml_for(repo_yaml: str, state_dir: Path) -> str:
    """The repository's dagster.yaml with its relative `.data/...` folders moved under `state_dir`.

    Everything else (storage class, run coordinator, pools) stays as the developer runs it, so the test
    exercises the real instance configuration without touching the developer's .data.
    """

    def absolute(match: re.Match[str]) -> str:
        return f"{match.group(1)}{state_dir / match.group(2)}"

    rewritten = re.sub(r"(base_dir:\s*)\.data/(\S+)", absolute, repo_yaml)
    if ".data/" in re.sub(r"#.*", "", rewritten):
        raise AssertionError("dagster.yaml names a .data/ path the test does not know how to relocate")
    return rewritten


def _reset_signals() -> None:
    # The test runner may have been started with SIGINT/SIGTERM ignored, and ignored signals are inherited;
    # dagster dev and its children must die on them like any interactive process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class DagsterDev:
    """A running `dagster dev`: where it listens, its log, and the GraphQL helper tests talk to it with."""

    base_url: str
    log_path: Path
    process: subprocess.Popen
    data_dir: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_for_code_location(self, timeout: float = CODE_LOCATION_TIMEOUT_S) -> str:
        """Name of the loaded code location; fails with the load error (not a timeout) when definitions are broken."""
        query = """
        { workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus
            locationOrLoadError { __typename ... on PythonError { message stack } }
        } } } }
        """
        deadline = time.monotonic() + timeout
        entries: list = []
        while time.monotonic() < deadline:
            self.assert_alive()
            entries = self.graphql(query)["workspaceOrError"].get("locationEntries", [])
            for entry in entries:
                loaded = entry.get("locationOrLoadError") or {}
                if loaded.get("__typename") == "PythonError":
                    raise AssertionError(
                        f"code location {entry['name']} failed to load: {loaded['message']}\n{''.join(loaded['stack'])}"
                    )
            if entries and all(
                e["loadStatus"] == "LOADED" and (e.get("locationOrLoadError") or {}).get("__typename") for e in entries
            ):
                return entries[0]["name"]
            time.sleep(1)
        raise AssertionError(f"code location not loaded after {timeout:.0f}s: {entries}\n{self.log_tail()}")

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")


def _wait_for_server(dev: DagsterDev, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        dev.assert_alive()
        try:
            with urllib.request.urlopen(f"{dev.base_url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = exc
        time.sleep(1)
    raise AssertionError(
        f"dagster dev did not answer {dev.base_url}/server_info within {timeout:.0f}s ({last_error}):\n{dev.log_tail()}"
    )


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGKILL the whole group (webserver, daemon, code server, run workers) and reap the leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def sandbox_only_environ() -> dict[str, str]:
    """This process's environment without anything that would point the pipeline at a live account or
    another profile: the test must only ever talk to the sandboxes."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(LIVE_ENV_PREFIXES) and key not in (PROFILE_ENV, "DAGSTER_HOME")
    }


def start_dagster_dev(
    workspace: Path, home: Path, data_dir: Path, env_overrides: dict[str, str], log_path: Path
) -> Iterator[DagsterDev]:
    port = free_port()
    env = {
        **sandbox_only_environ(),
        **env_overrides,
        database.DATA_DIR_ENV: str(data_dir),
        "DAGSTER_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }
    dagster = Path(sys.executable).with_name("dagster")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(dagster), "dev", "-w", str(workspace), "-p", str(port), "-h", "127.0.0.1"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_reset_signals,
        )
    dev = DagsterDev(base_url=f"http://127.0.0.1:{port}", log_path=log_path, process=process, data_dir=data_dir)
    try:
        _wait_for_server(dev, SERVER_START_TIMEOUT_S)
        yield dev
    finally:
        stop_process_group(process)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def e2e_workspace() -> Path:
    """The workspace the browser test loads: the repository's own once campaign_pipeline.definitions exists."""
    return REPO_ROOT / "workspace.yaml"


@pytest.fixture(scope="module")
def e2e_database_url(pg_url: str) -> Iterator[str]:
    """A database of its own on the session's server, so the webserver, daemon and runs share nothing with other
    tests (which wipe the instance and read the pipeline's tables) and are dropped with it."""
    admin = sa.create_engine(database.sqlalchemy_url(pg_url), isolation_level="AUTOCOMMIT")
    name = f"cp_e2e_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(database.sqlalchemy_url(pg_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Module scope: the webserver and daemon stop when the module's tests are done, not at the end of the session.
@pytest.fixture(scope="module")
def dagster_dev(
    e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path, e2e_workspace: Path
) -> Iterator[DagsterDev]:
    """`dagster dev` from the repository root, with all instance and pipeline state in a test database of its own
    and temporary folders, never the developer's .data."""
    state_dir = tmp_path_factory.mktemp("dagster_state")
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(instance_yaml_for((REPO_ROOT / "dagster.yaml").read_text(), state_dir))
    data_dir = tmp_path_factory.mktemp("pipeline_data")
    env = {database.DATABASE_URL_ENV: e2e_database_url}
    yield from start_dagster_dev(e2e_workspace, home, data_dir, env, artifacts_dir / "dagster_dev.log")


CHROMIUM_PACKAGES = ("chromium", "chromium-driver")
# apt waits this long for another apt/dpkg (e.g. a parallel CI job) to release its lock instead of failing.
APT_LOCK_TIMEOUT_S = 600


def chromium_install_commands() -> list[list[str]]:
    """What the browser tests run, as root, on a machine without Debian's Chromium (a fresh CI box)."""
    lock = f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S}"
    return [
        ["apt-get", "-o", lock, "update", "-qq"],
        ["apt-get", "-o", lock, "install", "-y", "-qq", "--no-install-recommends", *CHROMIUM_PACKAGES],
    ]


def ensure_chromium(executable: Path = CHROMIUM) -> Path:
    """Debian's Chromium, installed on first use when we are root, so the README's test command needs nothing
    installed by hand. Never a skip: a browser test that cannot run fails and says what to do."""
    if executable.exists():
        return executable
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            f"{executable} is missing and this process cannot install it (needs root and apt-get): "
            f"run `apt-get install {' '.join(CHROMIUM_PACKAGES)}` once, then re-run the tests"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in chromium_install_commands():
        done = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    if not executable.exists():
        pytest.fail(f"installed {' '.join(CHROMIUM_PACKAGES)} but {executable} is still missing")
    return executable


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    return ensure_chromium()


@pytest.fixture(scope="module")
def chromium_browser(chromium_executable: Path):
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_executable), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium_browser, artifacts_dir: Path, request: pytest.FixtureRequest):
    from playwright.sync_api import expect

    context = chromium_browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    # Assertions wait as long as actions do: on two busy shared cores the UI can take well over expect's 5 s.
    expect.set_options(timeout=60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        # A screenshot of wherever a failing test stopped is the first thing to look at in CI.
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            page.screenshot(path=str(artifacts_dir / f"{request.node.name}-failure.png"), full_page=True)
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
