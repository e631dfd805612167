"""execute_partition runs a partition in this process as a launched run does: it keeps no step output in memory."""

from __future__ import annotations

import gc
import weakref

import dagster as dg

from campaign_pipeline.run_in_process import execute_partition

PARTITIONS = dg.StaticPartitionsDefinition(["cmp1", "cmp2"])


class Frame:
    """Stands for a step's big output frame."""


class DroppingIOManager(dg.IOManager):
    """Stores nothing, like an IO manager whose table is elsewhere: only the run could keep the value alive."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        pass

    def load_input(self, context: dg.InputContext) -> object:
        return Frame()


def build_job(made: list[weakref.ref]) -> dg.JobDefinition:
    @dg.asset(partitions_def=PARTITIONS)
    def big(context) -> Frame:
        frame = Frame()
        made.append(weakref.ref(frame))
        context.add_output_metadata({"partition": context.partition_key})
        return frame

    defs = dg.Definitions(
        assets=[big],
        jobs=[dg.define_asset_job("job", partitions_def=PARTITIONS, executor_def=dg.in_process_executor)],
        resources={"io_manager": dg.IOManagerDefinition.hardcoded_io_manager(DroppingIOManager())},
    )
    return defs.resolve_job_def("job")


def test_no_output_outlives_its_step_and_the_run_is_the_partitions():
    made: list[weakref.ref] = []
    job = build_job(made)
    with dg.DagsterInstance.ephemeral() as instance:
        result = execute_partition(job, "cmp2", instance, tags={"team": "crm"})
        gc.collect()
        assert result.success
        assert made and made[0]() is None
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.tags["dagster/partition"] == "cmp2" and run.tags["team"] == "crm"
        [materialization] = result.get_asset_materialization_events()
        assert materialization.partition == "cmp2"

        # What it replaces: execute_in_process captures every output for its result, so the frame lives on.
        captured = job.execute_in_process(partition_key="cmp1", instance=instance)
        gc.collect()
        assert captured.success and made[1]() is not None


def test_a_failing_step_fails_the_result_without_raising():
    @dg.asset(partitions_def=PARTITIONS)
    def broken() -> None:
        raise RuntimeError("Salesforce said no")

    job = dg.Definitions(
        assets=[broken],
        jobs=[dg.define_asset_job("job", partitions_def=PARTITIONS, executor_def=dg.in_process_executor)],
    ).resolve_job_def("job")
    with dg.DagsterInstance.ephemeral() as instance:
        result = execute_partition(job, "cmp1", instance)
        assert not result.success
        assert "Salesforce said no" in str(result.get_step_failure_events()[0].step_failure_data.error)
