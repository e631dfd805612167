"""A one-step job in the `salesforce` pool whose step can be told to block, run in a child process the tests kill.

`python -m campaign_pipeline_tests.runs.blocking_job STARTED_FILE [--block | --until FILE]` runs it through
the demo's in-process path; the step writes STARTED_FILE once it holds its pool slot, then (with --block)
waits forever, or (with --until) until FILE exists.
"""

import os
import sys
import threading
import time
from pathlib import Path

import dagster as dg

from campaign_pipeline.demo import DatabaseUnavailable, DemoInterrupted, run_partition
from campaign_pipeline.salesforce.assets import SALESFORCE_POOL

PARTITIONS = dg.StaticPartitionsDefinition(["cmp1"])


@dg.asset(
    pool=SALESFORCE_POOL, partitions_def=PARTITIONS, config_schema={"started_file": str, "block": bool, "until": str}
)
def pool_step(context: dg.AssetExecutionContext) -> None:
    config = context.op_execution_context.op_config
    Path(config["started_file"]).write_text(context.run.run_id)
    if config["block"]:
        threading.Event().wait()  # until the test kills the process
    while config["until"] and not Path(config["until"]).exists():
        time.sleep(0.05)


# In process like sync_campaign_job, so a launched run executes its step in the worker the launcher started.
blocking_job = dg.define_asset_job("blocking_job", selection=[pool_step], executor_def=dg.in_process_executor)
defs = dg.Definitions(assets=[pool_step], jobs=[blocking_job])


def run(started_file: str, block: bool, until: str = "") -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("blocking_job")
    config = {"ops": {"pool_step": {"config": {"started_file": started_file, "block": block, "until": until}}}}
    with dg.DagsterInstance.get() as instance:
        return run_partition(job, "cmp1", instance, run_config=config)


if __name__ == "__main__":
    try:
        args = sys.argv[2:]
        result = run(sys.argv[1], "--block" in args, args[args.index("--until") + 1] if "--until" in args else "")
    except DemoInterrupted as exc:
        print(exc, file=sys.stderr, flush=True)
        os._exit(128 + exc.signum)  # as `campaign-pipeline demo` leaves on a signal
    except DatabaseUnavailable as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)  # as `campaign-pipeline demo` reports it
        sys.exit(1)
    sys.exit(0 if result.success else 1)
