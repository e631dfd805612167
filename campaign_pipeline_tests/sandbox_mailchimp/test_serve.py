"""The blocking `serve` entry point (behind `campaign-pipeline sandbox`) and the wall-clock mode it uses."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox, serve
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount


def test_serve_runs_until_stopped_and_shares_state(tmp_path: Path) -> None:
    state = tmp_path / "state" / "mailchimp.json"
    started: list[MailchimpSandbox] = []
    ready = threading.Event()
    stop = threading.Event()

    def on_ready(sandbox: MailchimpSandbox) -> None:
        started.append(sandbox)
        ready.set()

    account = SandboxAccount(seed=4, n_members=300)
    runner = threading.Thread(
        target=serve, args=("127.0.0.1", 0, account, state), kwargs={"stop": stop, "on_ready": on_ready}
    )
    runner.start()
    try:
        assert ready.wait(30)
        sandbox = started[0]
        assert sandbox.account.state_path == state and state.exists()
        # Another process's view of the same sandbox: a send made there is served here.
        new_id = SandboxAccount(seed=4, n_members=300, state_path=state).simulate_new_send()
        listed = requests.get(
            f"{sandbox.base_url}/campaigns", params={"count": 100}, auth=("u", sandbox.api_key), timeout=10
        ).json()
        assert new_id in [c["id"] for c in listed["campaigns"]]
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()


def test_wall_clock_account_looks_recent_and_moves_with_time() -> None:
    account = SandboxAccount(seed=8, n_members=200, follow_wall_clock=True)
    assert abs(account.now_epoch - time.time()) < 5
    newest = account.campaign_specs()[-1]
    age = datetime.now(UTC) - datetime.fromtimestamp(newest.send_time, UTC)
    assert timedelta(days=1) < age < timedelta(days=4)
    account.simulate_late_activity(hours=2)
    assert abs(account.now_epoch - (time.time() + 7200)) < 5
