"""Runs whose process died: found from the process id they logged, marked failed, their pool slots freed.

A run killed hard (SIGKILL, OOM, a lost machine) writes no end event: Dagster keeps it STARTED and its pool
slots stay taken, so every later run of the pool waits forever. Two places clean up after such a run:

- the run monitoring daemon (`dagster dev`, `dagster-daemon`), through `LocalProcessRunLauncher`, the default
  launcher plus a worker health check; the daemon frees the slots of finished runs itself
  (`run_monitoring.free_slots_after_run_end_seconds` in dagster.yaml);
- `campaign-pipeline demo`, which runs in its own process with no daemon: `fail_dead_runs` before each run.

A run's worker is the process that logged Dagster's first engine event with a `pid` ("Started process for
run", or "Executing steps in process" for in-process runs), or the process named by the tags the demo sets.
A pid is only trusted on the machine that wrote it (the tags say which) and when the process now holding that
pid is not younger than the run: pids are reused.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
from dagster._core.events import DagsterEventType
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import FINISHED_STATUSES, RunsFilter

from campaign_pipeline.core.errors import exception_chain

logger = logging.getLogger(__name__)

WORKER_PID_TAG = "campaign_pipeline/worker_pid"
WORKER_HOST_TAG = "campaign_pipeline/worker_host"
# A process that started this much after the run's first event is a newer process that reused the pid.
PID_REUSE_SLACK_SECONDS = 2.0
ACTIVE_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class RunWorker:
    pid: int
    started_at: float  # when the run said it was running in that process (epoch seconds)
    host: str | None  # None: not recorded (Dagster's own event), assumed local to a local launcher


def worker_tags() -> dict[str, str]:
    """Tags naming the calling process as the run's worker (for runs executed in this process)."""
    return {WORKER_PID_TAG: str(os.getpid()), WORKER_HOST_TAG: socket.gethostname()}


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunWorker | None:
    """The process a run is (or was) executing in, if it said so."""
    record = instance.get_run_record_by_id(run.run_id)
    created = record.create_timestamp.timestamp() if record else 0.0
    if WORKER_PID_TAG in run.tags:
        return RunWorker(int(run.tags[WORKER_PID_TAG]), created, run.tags.get(WORKER_HOST_TAG))
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20).records
    for event_record in records:
        data = event_record.event_log_entry.dagster_event
        metadata: Mapping[str, Any] = getattr(getattr(data, "event_specific_data", None), "metadata", None) or {}
        pid = metadata.get("pid")
        if pid is not None:
            return RunWorker(int(getattr(pid, "value", pid)), event_record.event_log_entry.timestamp, None)
    return None


def worker_is_alive(worker: RunWorker) -> bool | None:
    """True/False for a worker on this machine; None when it ran elsewhere (cannot tell from here)."""
    if worker.host is not None and worker.host != socket.gethostname():
        return None
    try:
        process = psutil.Process(worker.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= worker.started_at + PID_REUSE_SLACK_SECONDS
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists and belongs to someone else: do not fail a run we cannot see


def _started_after(worker: RunWorker) -> bool:
    """Whether the process with the worker's pid exists and started no earlier than `worker.started_at`."""
    try:
        process = psutil.Process(worker.pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() >= worker.started_at - 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_database_outage(exc: BaseException) -> bool:
    """Whether an error (or what caused it) is Postgres being unreachable, rather than a bug or bad data."""
    import psycopg2
    import sqlalchemy.exc
    from dagster_postgres.utils import DagsterPostgresException

    for link in exception_chain(exc):
        if isinstance(link, DagsterPostgresException | psycopg2.OperationalError | psycopg2.InterfaceError):
            return True
        if isinstance(link, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
            return True
    return False


def database_outage_message(exc: BaseException, what: str) -> str:
    """What to tell the user when Postgres went away during `what`: which database, and what to do."""
    from campaign_pipeline.storage.database import DATABASE_URL_ENV, database_url, is_embedded, redact_url

    try:
        url = redact_url(database_url())
    except Exception:  # naming the database must never raise in its own right
        url = "(unknown)"
    if is_embedded():
        where = f"the embedded Postgres ({url})"
        fix = "start it again (`campaign-pipeline db url` starts it)"
    else:
        where = f"{DATABASE_URL_ENV}={url}"
        fix = "bring that server back or fix the URL"
    reason = next((str(link).strip().splitlines()[0] for link in exception_chain(exc) if str(link).strip()), "")
    return (
        f"Lost the connection to Postgres at {where} during {what}"
        + (f" ({reason})" if reason else "")
        + f". Dagster could not record the run's end, so {fix}, then re-run: the run is marked failed on the"
        " next start, and the sync ledger keeps what was already written to Salesforce."
    )


def _failures_dir() -> Path:
    from campaign_pipeline.storage.database import data_dir

    return data_dir() / "run_failures"


def remember_failure(run_id: str, message: str) -> None:
    """Keep why a run died where no database is needed, for whoever marks it failed later."""
    try:
        folder = _failures_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{run_id}.txt").write_text(message)
    except OSError:
        logger.warning("could not keep the failure reason of run %s on disk", run_id)


def _remembered_failure(run_id: str) -> str | None:
    path = _failures_dir() / f"{run_id}.txt"
    try:
        return path.read_text()
    except OSError:
        return None


def _forget_failure(run_id: str) -> None:
    (_failures_dir() / f"{run_id}.txt").unlink(missing_ok=True)


def fail_dead_runs(instance: dg.DagsterInstance, reason: str = "") -> list[str]:
    """Mark failed every active run whose worker process on this machine is gone, and free its pool slots.

    Also frees slots still held by runs that already finished (a crashed run marked failed by a code server,
    with no daemon around to release what it held). Returns the ids of the runs marked failed.
    """
    failed: list[str] = []
    for run in instance.get_runs(filters=RunsFilter(statuses=ACTIVE_STATUSES)):
        worker = run_worker(instance, run)
        if worker is None or worker_is_alive(worker) is not False:
            continue
        message = (
            f"The process running this run (pid {worker.pid}) no longer exists: it was killed or crashed "
            f"before the run could finish. Marked failed{reason}; re-run the partition to finish its sync."
        )
        remembered = _remembered_failure(run.run_id)
        if remembered:
            message = f"{message}\nWhy it died: {remembered}"
        instance.report_engine_event(message, run)
        instance.report_run_failed(run, message)
        _forget_failure(run.run_id)
        failed.append(run.run_id)
    free_slots_of_finished_runs(instance)
    return failed


def free_slots_of_finished_runs(instance: dg.DagsterInstance) -> list[str]:
    """Release the pool slots (and pending slot claims) of runs that are no longer running."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    run_ids = list(storage.get_concurrency_run_ids())
    if not run_ids:
        return []
    finished = [
        record.dagster_run.run_id
        for record in instance.get_run_records(filters=RunsFilter(run_ids=run_ids, statuses=FINISHED_STATUSES))
    ]
    known = {record.dagster_run.run_id for record in instance.get_run_records(filters=RunsFilter(run_ids=run_ids))}
    # A slot held by a run that is not in the run storage at all (deleted run) is as stale as a finished one.
    stale = finished + [run_id for run_id in run_ids if run_id not in known]
    for run_id in stale:
        storage.free_concurrency_slots_for_run(run_id)
        logger.info("freed the pool slots held by run %s, which is no longer running", run_id)
    return stale


def serving_process(argv: list[str] | None = None) -> str | None:
    """'daemon' or 'webserver' when this process is one of the two `dagster dev` starts (also run on their own as
    `dagster-daemon run` / `dagster-webserver`), else None (a CLI command, a test, a run worker)."""
    program = (argv if argv is not None else sys.argv)[:1]
    path = Path(program[0]) if program else Path()
    if path.name == "dagster-daemon" or path.parent.name == "_daemon" and path.parent.parent.name == "dagster":
        return "daemon"
    if path.name == "dagster-webserver" or path.parent.name == "dagster_webserver":
        return "webserver"
    return None


def launches_runs_here(instance: dg.DagsterInstance, argv: list[str] | None = None) -> bool:
    """Whether this process launches the instance's runs: the daemon always (queued runs, backfills, sensors); the
    webserver only without the queued run coordinator (with it, the webserver queues and the daemon launches)."""
    kind = serving_process(argv)
    if kind == "webserver":
        return not isinstance(instance.run_coordinator, QueuedRunCoordinator)
    return kind == "daemon"


class LocalProcessRunLauncher(DefaultRunLauncher):
    """Runs as local processes, forked warm (campaign_pipeline.run_workers), with a worker health check.

    A run whose code location uses this interpreter is forked from a process that has its libraries imported
    already, instead of a code-server subprocess that imports them all again (seconds per run); any other run
    goes to the code server as with Dagster's default launcher. The default launcher cannot tell the run
    monitoring daemon whether a run's process still exists, so a run whose process died stays STARTED. This one
    answers from the run's pid; a run whose worker ran on another machine is reported RUNNING (unknown here),
    and is covered by max_runtime_seconds if set.
    """

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        """Made by the process that will launch runs (the daemon, with the queued run coordinator), the launcher
        warms its forkserver in the background at once, so the first run a user launches starts warm too."""
        super().register_instance(instance)
        if launches_runs_here(instance):
            self.warm_up()

    def warm_up(self) -> Any:
        """Start this process's run forkserver in the background (run_workers.warm_forkserver); returns the thread."""
        from campaign_pipeline.run_workers import warm_forkserver

        return warm_forkserver()

    def launch_run(self, context: LaunchRunContext) -> None:
        from campaign_pipeline.run_workers import FORKED_WORKER_PID_TAG, can_fork_for, start_forked_worker

        run = context.dagster_run
        if not can_fork_for(run):
            super().launch_run(context)
            return
        pid = start_forked_worker(self._instance, run)
        self._instance.add_run_tags(
            run.run_id, {FORKED_WORKER_PID_TAG: str(pid), WORKER_HOST_TAG: socket.gethostname()}
        )
        self._run_ids.add(run.run_id)

    def terminate(self, run_id: str) -> bool:
        from campaign_pipeline.run_workers import FORKED_WORKER_PID_TAG

        run = self._instance.get_run_by_id(run_id)
        if run is None or FORKED_WORKER_PID_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        record = self._instance.get_run_record_by_id(run_id)
        launched = record.create_timestamp.timestamp() if record else 0.0
        # Launched after the run was created, so a process older than the run is another that reused the pid.
        worker = RunWorker(int(run.tags[FORKED_WORKER_PID_TAG]), launched, run.tags.get(WORKER_HOST_TAG))
        if worker.host not in (None, socket.gethostname()) or not _started_after(worker):
            self._instance.report_engine_event(
                f"Could not stop the run: its worker process {worker.pid} is gone or on another machine.", run
            )
            return False
        # What the code server does to cancel a run: an interrupt, which Dagster turns into a clean cancel.
        os.kill(worker.pid, signal.SIGINT)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker process recorded yet")
        alive = worker_is_alive(worker)
        if alive is False:
            message = f"run worker process {worker.pid} no longer exists"
            remembered = _remembered_failure(run.run_id)
            return CheckRunHealthResult(WorkerStatus.FAILED, f"{message}: {remembered}" if remembered else message)
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {worker.pid}")


class WarmStartQueuedRunCoordinator(QueuedRunCoordinator):
    """Dagster's queued run coordinator, which also makes the run launcher when the daemon starts.

    Dagster makes an instance's launcher only when it first needs it: in the daemon that is the first dequeued run,
    so that run would wait for the forkserver's imports. The daemon makes its coordinator at start (the queue's
    dequeue interval); making the launcher then starts its warm-up (LocalProcessRunLauncher.register_instance).
    The webserver makes the coordinator too (to queue runs) and is left alone: it launches nothing.
    """

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        super().register_instance(instance)
        if serving_process() == "daemon":
            instance.run_launcher  # noqa: B018 (made now: its register_instance warms the forkserver)
