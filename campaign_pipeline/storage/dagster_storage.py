"""Dagster instance storage on dagster-postgres that starts the embedded Postgres when no server is configured."""

from __future__ import annotations

import sqlalchemy as sa
from dagster import Field, StringSource
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage

from campaign_pipeline.storage.database import (
    check_connection,
    database_url,
    libpq_url,
    sqlalchemy_url,
)


class PoolDefaultSafeEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres event log storage that survives a change of the pools' default limit.

    Dagster 1.13 re-applies a changed `concurrency.pools.default_limit` by inserting the pool's row and, on the
    duplicate key, updating it inside the same transaction, which Postgres has already aborted: every run
    using the pool then fails. Here the row is updated when it exists and inserted when it does not.
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
        super().__init__(postgres_url=postgres_url, inst_data=inst_data)
        self._event_log_storage = PoolDefaultSafeEventLogStorage(postgres_url, self.should_autocreate_tables)

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
