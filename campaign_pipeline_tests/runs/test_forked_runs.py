"""Runs launched through the instance's launcher (as the UI's daemon does) execute in a warm forked worker.

The job is blocking_job, loaded from its module by a real code server; the instance is the repository's
dagster.yaml (LocalProcessRunLauncher) on a database of its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget

from campaign_pipeline.run_health import LocalProcessRunLauncher
from campaign_pipeline.run_workers import FORKED_WORKER_PID_TAG
from campaign_pipeline_tests.runs.test_crashed_runs import REPO_ROOT, WAIT_SECONDS, _slot_holders, run_env  # noqa: F401

pytestmark = pytest.mark.slow


def _launch(instance: dg.DagsterInstance, workspace, config: dict) -> str:
    from dagster._cli.job import _create_run

    location = workspace.get_code_location(workspace.code_location_names[0])
    repository = next(iter(location.get_repositories().values()))
    run = _create_run(
        instance=instance,
        code_location=location,
        remote_repo=repository,
        remote_job=repository.get_full_job("blocking_job"),
        run_config={"ops": {"pool_step": {"config": config}}},
        tags={PARTITION_NAME_TAG: "cmp1"},
        op_selection=None,
        run_id=None,
    )
    instance.launch_run(run.run_id, workspace)
    return run.run_id


def _wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        record.dagster_event.message or "" if record.dagster_event else record.user_message
        for record in instance.all_logs(run_id)
    ]


@pytest.fixture
def blocking_workspace(run_env):  # noqa: F811 (the fixture imported above)
    target = ModuleTarget(
        module_name="campaign_pipeline_tests.runs.blocking_job",
        attribute=None,
        working_directory=str(REPO_ROOT),
        location_name=None,
    )
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, LocalProcessRunLauncher)
        with WorkspaceProcessContext(instance, target) as context:
            yield instance, context.create_request_context()


def test_a_launched_run_executes_in_a_forked_worker_not_a_code_server_subprocess(blocking_workspace, tmp_path: Path):
    instance, workspace = blocking_workspace
    started = tmp_path / "started"
    run_id = _launch(instance, workspace, {"started_file": str(started), "block": False, "until": ""})
    _wait_until(lambda: instance.get_run_by_id(run_id).is_finished, "the launched run never finished")

    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS, "\n".join(_messages(instance, run_id))
    assert started.read_text() == run_id
    pid = int(run.tags[FORKED_WORKER_PID_TAG])
    messages = _messages(instance, run_id)
    assert any(f"Started process for run (pid: {pid}), forked" in message for message in messages), messages
    assert f"Executing steps in process (pid: {pid})" in messages  # the steps ran in that very process
    assert pid != os.getpid()
    # The worker leaves once the run is done (it logs that last): no process lingers per run.
    _wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        f"the worker {pid} of a finished run is still running",
    )
    assert f"Process for run exited (pid: {pid})." in _messages(instance, run_id)


def test_terminate_cancels_a_forked_run_at_its_step_and_frees_its_pool_slot(blocking_workspace, tmp_path: Path):
    instance, workspace = blocking_workspace
    started = tmp_path / "started"
    run_id = _launch(instance, workspace, {"started_file": str(started), "block": True, "until": ""})
    _wait_until(started.exists, "the launched run never reached its step")
    assert run_id in _slot_holders(instance)

    assert instance.run_launcher.terminate(run_id) is True
    _wait_until(lambda: instance.get_run_by_id(run_id).is_finished, "the terminated run never finished")
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    _wait_until(lambda: run_id not in _slot_holders(instance), "the canceled run kept its pool slot")
    assert instance.run_launcher.terminate(run_id) is False  # nothing left to stop
