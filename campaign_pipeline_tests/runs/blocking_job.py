"""A one-step job in the `salesforce` pool whose step can be told to block, run in a child process the tests kill.

`python -m campaign_pipeline_tests.runs.blocking_job STARTED_FILE [--block]` runs it through the demo's
in-process path; the step writes STARTED_FILE once it holds its pool slot, then (with --block) waits forever.
"""

import os
import sys
import threading
from pathlib import Path

import dagster as dg

from campaign_pipeline.demo import DemoInterrupted, run_partition
from campaign_pipeline.salesforce.assets import SALESFORCE_POOL

PARTITIONS = dg.StaticPartitionsDefinition(["cmp1"])


@dg.asset(pool=SALESFORCE_POOL, partitions_def=PARTITIONS, config_schema={"started_file": str, "block": bool})
def pool_step(context: dg.AssetExecutionContext) -> None:
    Path(context.op_execution_context.op_config["started_file"]).write_text(context.run.run_id)
    if context.op_execution_context.op_config["block"]:
        threading.Event().wait()  # until the test kills the process


blocking_job = dg.define_asset_job("blocking_job", selection=[pool_step])
defs = dg.Definitions(assets=[pool_step], jobs=[blocking_job])


def run(started_file: str, block: bool) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("blocking_job")
    config = {"ops": {"pool_step": {"config": {"started_file": started_file, "block": block}}}}
    with dg.DagsterInstance.get() as instance:
        return run_partition(job, "cmp1", instance, run_config=config)


if __name__ == "__main__":
    try:
        result = run(sys.argv[1], "--block" in sys.argv[2:])
    except DemoInterrupted as exc:
        print(exc, file=sys.stderr, flush=True)
        os._exit(128 + exc.signum)  # as `campaign-pipeline demo` leaves on a signal
    sys.exit(0 if result.success else 1)
