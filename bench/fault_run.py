"""One run of the sync job for one campaign partition, in its own process: what `bench.faults` starts and kills.

    python -m bench.fault_run --campaign-index 0 --members 800

Reads the instance from DAGSTER_HOME, the database from CAMPAIGN_PIPELINE_DATABASE_URL, the profile from
CAMPAIGN_PIPELINE_PROFILE and the sandboxes' faults from CAMPAIGN_PIPELINE_SANDBOX_FAULTS, like any run
process. Runs through the demo's in-process path (`run_partition`), so a run left behind by a killed process
is failed and its pool slots freed first. Prints one JSON line: campaign, run_id, success.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from datetime import UTC, datetime

warnings.filterwarnings("ignore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign-index", type=int, default=0, help="which regular campaign, oldest first")
    parser.add_argument("--members", type=int, default=800, help="sandbox audience size")
    parser.add_argument("--list-campaigns", action="store_true", help="print the campaign ids and exit")
    args = parser.parse_args(argv)

    import dagster as dg

    from campaign_pipeline.core.campaign_keys import campaign_partition_key
    from campaign_pipeline.definitions import SYNC_JOB_NAME, build_definitions, load_active_profile
    from campaign_pipeline.demo import DatabaseUnavailable, DemoInterrupted, run_partition
    from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS
    from campaign_pipeline.sandbox.resources import local_sandbox_account, sandbox_state_path_default

    account = local_sandbox_account(sandbox_state_path_default(), args.members, 7)
    regular = [spec for spec in account.campaign_specs() if spec.kind == "regular"]
    if args.list_campaigns:
        print(json.dumps([spec.campaign_id for spec in regular]))
        return 0
    spec = regular[args.campaign_index]
    # The key the sensor gives the campaign, from the send time and title the sandbox serves for it; not read over
    # HTTP here, where it would count against the run's Mailchimp fault rules.
    key = campaign_partition_key(datetime.fromtimestamp(spec.send_time, tz=UTC), spec.title, spec.campaign_id)
    defs = build_definitions(load_active_profile())
    run_config = {
        "loggers": {"console": {"config": {"log_level": "ERROR"}}},
        "resources": {"mailchimp": {"config": {"sandbox_members": args.members}}},
    }
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS, [key])
        try:
            result = run_partition(defs.resolve_job_def(SYNC_JOB_NAME), key, instance, run_config=run_config)
        except DemoInterrupted as exc:
            print(exc, file=sys.stderr, flush=True)
            os._exit(128 + exc.signum)
        except DatabaseUnavailable as exc:
            print(json.dumps({"campaign": key, "success": False, "error": str(exc)}), flush=True)
            return 3
        errors = [
            event.event_specific_data.error.message  # type: ignore[union-attr]
            for event in result.all_events
            if event.is_step_failure
        ]
        print(json.dumps({"campaign": key, "run_id": result.run_id, "success": result.success, "errors": errors}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
