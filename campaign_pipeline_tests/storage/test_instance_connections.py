"""The Dagster instance storage keeps its Postgres connections between queries, and never shares them across a fork."""

from __future__ import annotations

import os

import dagster as dg
import sqlalchemy as sa

from campaign_pipeline.storage.dagster_storage import (
    PoolDefaultSafeEventLogStorage,
    PooledRunStorage,
    PooledScheduleStorage,
)


@dg.asset
def first() -> int:
    return 1


@dg.asset
def second(first: int) -> int:
    return first + 1


@dg.asset
def third(second: int) -> int:
    return second + 1


def instance_on(home, database_url: str) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "storage:\n"
        "  custom:\n"
        "    module: campaign_pipeline.storage.dagster_storage\n"
        "    class: EmbeddablePostgresStorage\n"
        "    config:\n"
        f"      postgres_url: {database_url}\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


def storage_engines(instance: dg.DagsterInstance) -> list[sa.Engine]:
    storages = [instance.run_storage, instance.event_log_storage, instance.schedule_storage]
    assert [type(s) for s in storages] == [PooledRunStorage, PoolDefaultSafeEventLogStorage, PooledScheduleStorage]
    return [s._engine for s in storages]  # type: ignore[union-attr]  # noqa: SLF001


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_run_reuses_connections_instead_of_opening_one_per_query(fresh_database_url, tmp_path):
    instance = instance_on(tmp_path / "home", fresh_database_url)
    counts = {"connects": 0, "queries": 0}

    def on_connect(*_args) -> None:
        counts["connects"] += 1

    def on_query(*_args) -> None:
        counts["queries"] += 1

    for engine in storage_engines(instance):
        sa.event.listen(engine, "connect", on_connect)
        sa.event.listen(engine, "before_cursor_execute", on_query)
    try:
        assert dg.materialize([first, second, third], instance=instance).success
    finally:
        instance.dispose()
    # A NullPool engine (dagster-postgres's default outside the webserver) connects once per checkout.
    assert counts["queries"] > 50, counts
    assert counts["connects"] <= 6, counts


def test_a_forked_child_opens_its_own_connection(fresh_database_url, tmp_path):
    instance = instance_on(tmp_path / "home", fresh_database_url)
    run_engine = storage_engines(instance)[0]
    parent_pid = backend_pid(run_engine)
    assert backend_pid(run_engine) == parent_pid  # kept between queries
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.write(write_end, str(backend_pid(run_engine)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    child_pid = int(os.read(read_end, 64).decode() or 0)
    os.close(read_end)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid and child_pid != parent_pid
    # The parent's connection was neither closed nor used by the child.
    assert backend_pid(run_engine) == parent_pid
    assert len(instance.get_runs()) == 0
    instance.dispose()


def test_a_dropped_connection_is_replaced_before_the_next_query(fresh_database_url, tmp_path):
    instance = instance_on(tmp_path / "home", fresh_database_url)
    run_engine = storage_engines(instance)[0]
    dropped = backend_pid(run_engine)
    killer = sa.create_engine(fresh_database_url)
    with killer.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar_one()
    killer.dispose()
    # As after a Postgres restart: the kept connection is dead; the next query reconnects instead of failing.
    assert dg.materialize([first], instance=instance).success
    assert backend_pid(run_engine) != dropped
    instance.dispose()
