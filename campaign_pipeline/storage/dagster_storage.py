"""Dagster instance storage on dagster-postgres that starts the embedded Postgres when no server is configured."""

from __future__ import annotations

import os
import weakref

import sqlalchemy as sa
from dagster import Field, StringSource
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage

from campaign_pipeline.storage.database import (
    check_connection,
    database_url,
    libpq_url,
    sqlalchemy_url,
)

# Engines of the instance storages in this process. A forked child (the run launcher's forkserver forks every run)
# must not reuse its parent's sockets: it drops the inherited pools without closing them and opens its own.
_POOLED_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    for engine in list(_POOLED_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def _pooled_engine(postgres_url: str) -> sa.Engine:
    """An engine that keeps one connection open between queries (dagster-postgres opens one per query).

    dagster-postgres gives every storage a ``NullPool`` engine outside the webserver, so a run process connects
    anew for each of its hundreds of event-log and run-storage queries (about 570 for a no-op run of the sync
    job, 18 ms each on this machine under load, against 0.1 ms for the query itself). One kept connection per
    storage, more while threads overlap, checked with a ping before use so a restarted Postgres costs one
    reconnect instead of a failed query.
    """
    engine = sa.create_engine(
        postgres_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=10, pool_pre_ping=True
    )
    _POOLED_ENGINES.add(engine)
    return engine


class _KeptConnections:
    """Mixed in before a dagster-postgres storage: its engine becomes a pooled one (see ``_pooled_engine``).

    The storage's own ``__init__`` runs first (its table checks on its NullPool engine), then that engine is
    swapped; disposing the storage closes the kept connections.
    """

    _engine: sa.Engine

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True):
        super().__init__(postgres_url, should_autocreate_tables=should_autocreate_tables)  # type: ignore[call-arg]
        self._engine.dispose()
        self._engine = _pooled_engine(postgres_url)

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class PooledRunStorage(_KeptConnections, PostgresRunStorage):
    """dagster-postgres run storage on a pooled engine."""


class PooledScheduleStorage(_KeptConnections, PostgresScheduleStorage):
    """dagster-postgres schedule storage on a pooled engine."""


class PoolDefaultSafeEventLogStorage(_KeptConnections, PostgresEventLogStorage):
    """dagster-postgres event log storage that survives a change of the pools' default limit.

    Dagster 1.13 re-applies a changed `concurrency.pools.default_limit` by inserting the pool's row and, on the
    duplicate key, updating it inside the same transaction, which Postgres has already aborted: every run
    using the pool then fails. Here the row is updated when it exists and inserted when it does not.

    It runs on a pooled engine (``_KeptConnections``).
    """

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        default_limit = self._instance.global_op_concurrency_default_limit if self.has_instance else None
        if default_limit is None or not self.has_concurrency_limits_table or not self.has_default_pool_limit_col:
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        self._reconcile_concurrency_limits_from_slots()
        limits = ConcurrencyLimitsTable
        with self.index_transaction() as conn:
            existing = conn.execute(
                sa.select(limits.c.id).where(limits.c.concurrency_key == concurrency_key).with_for_update()
            ).first()
            if existing is None:
                conn.execute(
                    limits.insert().values(
                        concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True
                    )
                )
            else:
                conn.execute(
                    limits.update()
                    .where(limits.c.concurrency_key == concurrency_key)
                    .values(limit=default_limit, using_default_limit=True)
                )
            self._allocate_concurrency_slots(conn, concurrency_key, default_limit)
        return True


class EmbeddablePostgresStorage(DagsterPostgresStorage):
    """`storage: custom:` for dagster.yaml.

    Uses `postgres_url` when given (e.g. `{env: CAMPAIGN_PIPELINE_DATABASE_URL}`), else the same database the
    pipeline uses: CAMPAIGN_PIPELINE_DATABASE_URL or the embedded server under the data folder, so plain
    `dagster dev` in a fresh clone works and keeps runs and partitions across restarts.
    """

    def __init__(self, postgres_url: str, inst_data: ConfigurableClassData | None = None):
        # DagsterPostgresStorage.__init__ would build its own three storages (and check their tables) only for
        # them to be replaced; the attributes it sets are set here instead.
        self.postgres_url = postgres_url
        self.should_autocreate_tables = True
        self._inst_data = inst_data
        self._run_storage = PooledRunStorage(postgres_url)
        self._event_log_storage = PoolDefaultSafeEventLogStorage(postgres_url)
        self._schedule_storage = PooledScheduleStorage(postgres_url)
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def config_type(cls):
        return {"postgres_url": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value):  # type: ignore[override]
        url = libpq_url(config_value["postgres_url"]) if config_value.get("postgres_url") else database_url()
        check_connection(url)
        # dagster-postgres hands the URL to SQLAlchemy, whose 2.x maps a bare postgresql:// to psycopg 3;
        # name psycopg2, the driver dagster-postgres installs.
        return cls(postgres_url=sqlalchemy_url(url), inst_data=inst_data)

    # The per-storage class data of the parent points at dagster_postgres classes with *this* config,
    # which they could not read; the combined storage is all an instance needs.
    @property
    def event_storage_data(self):
        return None

    @property
    def run_storage_data(self):
        return None

    @property
    def schedule_storage_data(self):
        return None
