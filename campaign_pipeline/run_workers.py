"""Run workers forked from a process that has already imported the heavy libraries, so a UI run starts at once.

Dagster's code server starts every run in a freshly spawned interpreter that imports Dagster, pandas, pandera,
SQLAlchemy, matplotlib... again before the first step: about 4 s of a no-op run's 12 s on two shared cores
(bench/run_overhead.py). Here the launcher forks each run from a forkserver that imported those libraries once.
Only third-party libraries are preloaded: the project's own code is imported by each run, so an edited asset is
picked up by the next run exactly as with the code server. The worker then does what the code server's run
subprocess does (dagster._grpc.impl): load the job from its code origin, execute it, log its process id.
The daemon starts the forkserver as it starts (run_health.WarmStartQueuedRunCoordinator, warm_forkserver), in
the background, so the first run is forked warm too; a launch during that warm-up waits for it.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
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

# How long a launch waits for a warm-up under way before it forks anyway (the forkserver then finishes its imports
# first: multiprocessing starts one forkserver per process, whoever asks first).
WARM_UP_WAIT_SECONDS = 300.0

_context_lock = threading.Lock()
_context: Any = None
_warm_up: threading.Thread | None = None
_warm_up_seconds: float | None = None


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


def warm_forkserver() -> threading.Thread:
    """Start the forkserver in the background, so the first run launched is forked warm; once per process.

    The thread starts the forkserver (which imports PRELOADED_LIBRARIES) and forks one no-op worker from it, so
    when the thread ends the forkserver has imported everything and forked once. Starting the process that
    launches runs (the daemon) does not wait for it."""
    global _warm_up
    with _context_lock:
        if _warm_up is None:
            _warm_up = threading.Thread(target=_fork_once, name="forkserver-warm-up", daemon=True)
            _warm_up.start()
        return _warm_up


def _fork_once() -> None:
    started = time.perf_counter()
    try:
        process = _forkserver_context().Process(target=_ready, name="forkserver-warm-up")
        process.start()
        process.join()
    except Exception:  # a failed warm-up only costs the first run its imports: that launch starts the forkserver
        logger.warning("could not warm the run forkserver; the first run will start it", exc_info=True)
        return
    global _warm_up_seconds
    _warm_up_seconds = time.perf_counter() - started
    logger.info("run forkserver warm after %.1f s (pid %s)", _warm_up_seconds, forkserver_pid())


def warm_up_seconds() -> float | None:
    """How long this process's warm-up took, from its start to the forkserver's first fork (None: none done)."""
    return _warm_up_seconds


def _ready() -> None:
    """The warm-up worker's body: nothing; forking it proved the forkserver ready."""


def forkserver_pid() -> int | None:
    """The pid of this process's forkserver, None before one was started."""
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]


def stop_forkserver() -> None:
    """Stop this process's forkserver and the resource tracker multiprocessing started with it (workers it forked
    keep running); a process exiting stops both anyway. The next launch starts them again."""
    from multiprocessing import forkserver, resource_tracker

    global _warm_up
    _wait_for_warm_up()
    forkserver._forkserver._stop()  # type: ignore[attr-defined]
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]
    with _context_lock:
        _warm_up = None


def _wait_for_warm_up() -> None:
    """A launch that arrives during the warm-up waits for it rather than racing it for the forkserver."""
    warm_up = _warm_up
    if warm_up is not None and warm_up.is_alive() and warm_up is not threading.current_thread():
        warm_up.join(WARM_UP_WAIT_SECONDS)


def fork_worker(target: Any, args: tuple[Any, ...], name: str) -> Any:
    """Start ``target(*args)`` in a process forked from the forkserver, after a warm-up under way if any."""
    _wait_for_warm_up()
    process = _forkserver_context().Process(target=target, args=args, name=name)
    process.start()
    return process


def start_forked_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """Fork the worker that executes `run` and return its pid; the run's events and status do the rest."""
    from dagster._serdes import serialize_value

    process = fork_worker(
        execute_run_in_worker,
        (serialize_value(instance.get_ref()), run.run_id, dict(os.environ)),
        name=f"dagster-run-{run.run_id}",
    )
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
