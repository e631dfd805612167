"""Run workers forked from a process that has already imported the heavy libraries, so a UI run starts at once.

Dagster's code server starts every run in a freshly spawned interpreter that imports Dagster, pandas, pandera,
SQLAlchemy, matplotlib... again before the first step: about 4 s of a no-op run's 12 s on two shared cores
(bench/run_overhead.py). Here the launcher forks each run from a forkserver that imported those libraries once.
Only third-party libraries are preloaded: the project's own code is imported by each run, so an edited asset is
picked up by the next run exactly as with the code server. The worker then does what the code server's run
subprocess does (dagster._grpc.impl): load the job from its code origin, execute it, log its process id.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
from typing import Any

import dagster as dg

logger = logging.getLogger(__name__)

# Libraries every run of the project imports (steps included: matplotlib draws the funnel of campaign_totals).
# A name missing here only costs its import time in each run; one that fails to import is skipped by the forkserver.
PRELOADED_LIBRARIES = (
    "dagster",
    "dagster_postgres",
    "dagster_pandera",
    "pandas",
    "pandera.pandas",
    "sqlalchemy",
    "psycopg2",
    "requests",
    "simple_salesforce",
    "trustme",
    "matplotlib.pyplot",
)
# The forked worker's pid, for terminate (the run's own events name it too, once the worker has started).
FORKED_WORKER_PID_TAG = "campaign_pipeline/forked_worker_pid"

_context_lock = threading.Lock()
_context: Any = None


def can_fork_for(run: dg.DagsterRun) -> bool:
    """Whether this process can run `run`'s code itself: same interpreter as the code location, on POSIX."""
    origin = run.job_code_origin
    if os.name != "posix" or origin is None or not origin.executable_path:
        return False
    # The virtualenv's own path, not its target: two venvs can share one base interpreter.
    return os.path.abspath(origin.executable_path) == os.path.abspath(sys.executable)


def _forkserver_context() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(PRELOADED_LIBRARIES))
            _context = context
        return _context


def start_forked_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """Fork the worker that executes `run` and return its pid; the run's events and status do the rest."""
    from dagster._serdes import serialize_value

    process = _forkserver_context().Process(
        target=execute_run_in_worker,
        args=(serialize_value(instance.get_ref()), run.run_id, dict(os.environ)),
        name=f"dagster-run-{run.run_id}",
    )
    process.start()
    # The forkserver reaps the worker. Left in multiprocessing's list of children, a clean exit of this process
    # (the daemon, a test) would wait for the run to finish; a run of the code server does not tie it either.
    multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]
    assert process.pid is not None
    return process.pid


def execute_run_in_worker(serialized_instance_ref: str, run_id: str, environ: dict[str, str]) -> None:
    """The worker's body: the launching process's environment, then the run as the code server would execute it."""
    from dagster._core.events import EngineEventData
    from dagster._core.instance.ref import InstanceRef
    from dagster._grpc.impl import core_execute_run
    from dagster._serdes import deserialize_value
    from dagster._utils.hosted_user_process import recon_job_from_origin
    from dagster._utils.interrupts import capture_interrupts

    # The forkserver kept the environment of its first launch; the run gets the one of its own launch.
    os.environ.clear()
    os.environ.update(environ)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    pid = os.getpid()
    with capture_interrupts():
        instance_ref = deserialize_value(serialized_instance_ref, InstanceRef)
        with dg.DagsterInstance.from_ref(instance_ref) as instance:
            run = instance.get_run_by_id(run_id)
            if run is None or run.job_code_origin is None:
                raise RuntimeError(f"run {run_id} is not in the run storage (or has no code origin) to execute")
            instance.report_engine_event(
                f"Started process for run (pid: {pid}), forked with the libraries already imported.",
                run,
                EngineEventData.in_process(pid),
            )
            try:
                for _event in core_execute_run(
                    recon_job_from_origin(run.job_code_origin), run, instance, inject_env_vars=False
                ):
                    pass
            except (Exception, KeyboardInterrupt):
                pass  # core_execute_run has logged the error and failed the run, as for a code-server run
            finally:
                instance.report_engine_event(f"Process for run exited (pid: {pid}).", run)
