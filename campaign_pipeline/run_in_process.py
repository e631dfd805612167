"""Run a job for one partition in this process the way a launched run executes: no output kept in memory.

``JobDefinition.execute_in_process`` captures every step's output value in memory for the result's
``output_for_node``: in one run of a 1,000,000-recipient campaign that keeps every frame of every step alive
until the result is dropped (gigabytes), while the run process a launched run gets (the code server's
``dagster api execute_run``) keeps none, since outputs live in the IO managers' tables. ``execute_partition``
creates the run as ``execute_in_process`` does (the job's tags, the partition's tags, its run config) and then
executes it as a run worker does: ``execute_run`` on the in-memory job, without output capture. The demo and the
end-to-end bench run through it, so what they measure and what a user's run holds are the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.execution.execute_in_process import merge_run_tags
from dagster._core.execution.job_execution_result import JobExecutionResult


def execute_partition(
    job: dg.JobDefinition,
    partition_key: str,
    instance: dg.DagsterInstance,
    *,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> JobExecutionResult:
    """Create and execute one run of ``job`` for ``partition_key`` in this process; failures are in the result."""
    config = dict(run_config or {})
    run_tags = merge_run_tags(
        job_def=job,
        partition_key=partition_key,
        tags=tags,
        asset_selection=None,
        instance=instance,
        run_config=config,
    )
    run = instance.create_run_for_job(job_def=job, run_config=config, tags=run_tags, run_id=run_id)
    return execute_run(InMemoryJob(job), run, instance, raise_on_error=False)
