"""The sandbox account's shared state file: processes that change it at once never lose a change."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

SENDS_PER_PROCESS = 8


def _send_many(state_path: str) -> None:
    account = SandboxAccount(seed=3, n_members=50, state_path=state_path)
    for _ in range(SENDS_PER_PROCESS):
        account.simulate_new_send()
        account.simulate_late_activity(hours=1)


def test_concurrent_processes_keep_every_send_and_clock_step(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    first = SandboxAccount(seed=3, n_members=50, state_path=state_path)
    sends_before, clock_before = len(first.campaign_ids()), first.now_epoch
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_send_many, args=(str(state_path),)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert len(first.campaign_ids()) == sends_before + 3 * SENDS_PER_PROCESS
    assert first.now_epoch == clock_before + 3 * SENDS_PER_PROCESS * 3600


def test_a_state_file_of_another_seed_is_refused(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    SandboxAccount(seed=3, n_members=50, state_path=state_path)
    with pytest.raises(ValueError, match="belongs to seed 3, not 4"):
        SandboxAccount(seed=4, n_members=50, state_path=state_path)
