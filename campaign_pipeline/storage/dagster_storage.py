"""Dagster instance storage on dagster-postgres that starts the embedded Postgres when no server is configured."""

from __future__ import annotations

from dagster import Field, StringSource
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from campaign_pipeline.storage.database import (
    check_connection,
    database_url,
    libpq_url,
    sqlalchemy_url,
)


class EmbeddablePostgresStorage(DagsterPostgresStorage):
    """`storage: custom:` for dagster.yaml.

    Uses `postgres_url` when given (e.g. `{env: CAMPAIGN_PIPELINE_DATABASE_URL}`), else the same database the
    pipeline uses: CAMPAIGN_PIPELINE_DATABASE_URL or the embedded server under the data folder, so plain
    `dagster dev` in a fresh clone works and keeps runs and partitions across restarts.
    """

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
