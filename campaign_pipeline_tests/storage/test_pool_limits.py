"""Changing the pools' default limit in dagster.yaml must not break runs on the Postgres instance."""

import dagster as dg

from campaign_pipeline.storage.dagster_storage import PoolDefaultSafeEventLogStorage


@dg.asset(pool="mailchimp")
def pooled() -> int:
    return 1


def instance_with_default_limit(home, database_url: str, limit: int) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "storage:\n"
        "  custom:\n"
        "    module: campaign_pipeline.storage.dagster_storage\n"
        "    class: EmbeddablePostgresStorage\n"
        "    config:\n"
        f"      postgres_url: {database_url}\n"
        "concurrency:\n"
        "  pools:\n"
        "    granularity: op\n"
        f"    default_limit: {limit}\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


def test_runs_succeed_after_the_default_pool_limit_changes(fresh_database_url, tmp_path):
    first = instance_with_default_limit(tmp_path / "a", fresh_database_url, 4)
    assert isinstance(first.event_log_storage, PoolDefaultSafeEventLogStorage)
    assert dg.materialize([pooled], instance=first).success
    assert first.event_log_storage.get_concurrency_info("mailchimp").slot_count == 4
    first.dispose()

    second = instance_with_default_limit(tmp_path / "b", fresh_database_url, 1)
    assert dg.materialize([pooled], instance=second).success
    assert second.event_log_storage.get_concurrency_info("mailchimp").slot_count == 1
    second.dispose()
