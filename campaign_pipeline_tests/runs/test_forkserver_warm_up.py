"""The run launcher's forkserver is warmed in the background when the launcher is made by the process that launches
runs (the daemon), so the first run a user launches is forked warm; a launch during the warm-up waits for it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from campaign_pipeline.run_health import launches_runs_here, serving_process
from campaign_pipeline_tests.runs.test_crashed_runs import REPO_ROOT, WAIT_SECONDS, run_env  # noqa: F401

# Each case starts a fresh interpreter: the forkserver is one per process, and this one may have one already.
WARM_UP_THEN_LAUNCH = textwrap.dedent(
    """
    import json, time
    import psutil
    from campaign_pipeline import run_workers

    assert run_workers.forkserver_pid() is None
    started = time.perf_counter()
    warm_up = run_workers.warm_forkserver()
    returned_after = time.perf_counter() - started
    again = run_workers.warm_forkserver()
    # A launch right away, while the forkserver is still importing the libraries.
    during = warm_up.is_alive()
    worker = run_workers.fork_worker(time.sleep, (3,), name="probe")
    alive_after_fork = warm_up.is_alive()
    parent = psutil.Process(worker.pid).ppid()
    forkservers = [
        child.pid for child in psutil.Process().children()
        if "multiprocessing.forkserver" in " ".join(child.cmdline())
    ]
    worker.join()
    print(json.dumps({
        "returned_after": returned_after,
        "same_thread": again is warm_up,
        "during": during,
        "alive_after_fork": alive_after_fork,
        "worker_parent": parent,
        "forkserver": run_workers.forkserver_pid(),
        "forkservers": forkservers,
    }))
    """
)


def test_a_launch_during_the_warm_up_waits_for_it_and_one_forkserver_serves_both():
    done = subprocess.run(
        [sys.executable, "-c", WARM_UP_THEN_LAUNCH], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["same_thread"], "a second warm-up request must not start another"
    # The warm-up runs in the background: asking for it returns at once, before the libraries are imported.
    assert seen["during"] and seen["returned_after"] < 1.0, seen
    # The launch waited for the warm-up to finish, then was forked by the one forkserver the warm-up started.
    assert not seen["alive_after_fork"], seen
    assert seen["forkservers"] == [seen["forkserver"]] and seen["worker_parent"] == seen["forkserver"], seen


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["/venv/bin/dagster-daemon", "run"], "daemon"),
        (["/venv/lib/python3.11/site-packages/dagster/_daemon/__main__.py", "run"], "daemon"),  # dagster dev's
        (["/venv/bin/dagster-webserver"], "webserver"),
        (["/venv/lib/python3.11/site-packages/dagster_webserver/__main__.py", "--port", "3000"], "webserver"),
        (["/venv/bin/campaign-pipeline", "demo"], None),
        (["/venv/bin/pytest"], None),
        ([], None),
    ],
)
def test_only_the_processes_dagster_dev_starts_are_serving_processes(argv, kind):
    assert serving_process(argv) == kind


def test_with_the_queued_coordinator_only_the_daemon_launches_runs(tmp_path):
    def with_coordinator(name: str) -> dg.DagsterInstance:
        (tmp_path / name).mkdir()
        coordinator = {"module": "dagster._core.run_coordinator", "class": name}
        return dg.DagsterInstance.local_temp(str(tmp_path / name), overrides={"run_coordinator": coordinator})

    queued, direct = with_coordinator("QueuedRunCoordinator"), with_coordinator("DefaultRunCoordinator")
    daemon, webserver, cli = ["/venv/bin/dagster-daemon", "run"], ["/venv/bin/dagster-webserver"], ["/venv/bin/dg"]
    assert launches_runs_here(queued, daemon) and not launches_runs_here(queued, webserver)
    # Without the queue the webserver launches the runs it is asked for; the daemon still launches sensors' runs.
    assert launches_runs_here(direct, webserver) and launches_runs_here(direct, daemon)
    assert not launches_runs_here(queued, cli) and not launches_runs_here(direct, cli)


def _forkservers_of(process: psutil.Process) -> list[int]:
    found = []
    for child in process.children():
        try:
            if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_daemon_warms_its_forkserver_at_start_and_forks_the_first_queued_run_from_it(run_env, tmp_path):  # noqa: F811
    """`dagster-daemon run` (as `dagster dev` starts it) on the repository's dagster.yaml: its forkserver is up
    before any run exists, and the first run queued from outside (as the UI queues it) is forked by that one."""
    from dagster._cli.job import _create_run
    from dagster._core.storage.tags import PARTITION_NAME_TAG
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    from campaign_pipeline.run_workers import FORKED_WORKER_PID_TAG

    module = "campaign_pipeline_tests.runs.blocking_job"
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", module],
        cwd=REPO_ROOT,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        watched = psutil.Process(daemon.pid)
        deadline = time.monotonic() + WAIT_SECONDS
        while not _forkservers_of(watched):
            assert daemon.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon started no forkserver before any run"
            time.sleep(0.2)
        [forkserver] = _forkservers_of(watched)

        started, release = tmp_path / "started", tmp_path / "release"
        target = ModuleTarget(module_name=module, attribute=None, working_directory=str(REPO_ROOT), location_name=None)
        with dg.DagsterInstance.get() as instance, WorkspaceProcessContext(instance, target) as context:
            workspace = context.create_request_context()
            location = workspace.get_code_location(workspace.code_location_names[0])
            repository = next(iter(location.get_repositories().values()))
            run = _create_run(
                instance=instance,
                code_location=location,
                remote_repo=repository,
                remote_job=repository.get_full_job("blocking_job"),
                run_config={
                    "ops": {
                        "pool_step": {"config": {"started_file": str(started), "block": False, "until": str(release)}}
                    }
                },
                tags={PARTITION_NAME_TAG: "cmp1"},
                op_selection=None,
                run_id=None,
            )
            instance.submit_run(run.run_id, workspace)  # queued; the daemon dequeues and launches it
            while not started.exists():
                assert time.monotonic() < deadline + WAIT_SECONDS, "the queued run never reached its step"
                time.sleep(0.2)
            worker = int(instance.get_run_by_id(run.run_id).tags[FORKED_WORKER_PID_TAG])
            assert psutil.Process(worker).ppid() == forkserver
            assert _forkservers_of(watched) == [forkserver]
            release.write_text("")
            while not instance.get_run_by_id(run.run_id).is_finished:
                assert time.monotonic() < deadline + 2 * WAIT_SECONDS, "the run never finished"
                time.sleep(0.2)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
