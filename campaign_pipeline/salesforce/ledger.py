"""The sync ledger: per record kind and stable key, the Salesforce Id, content hash and last write result."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from campaign_pipeline.core.diff import LEDGER_COLUMNS, RESULT_ERROR, RESULT_OK, RESULT_PENDING
from campaign_pipeline.storage.database import PIPELINE_SCHEMA, table_setup
from campaign_pipeline.storage.frames import TEXT_SPEC, UTC_INSTANT_SPEC, copy_stream, query_frame

LEDGER_TABLE = "sync_ledger"
# What load() reads, with the dtypes COPY's text is parsed into (an error message may hold a line break).
_LOADED: dict[str, dict] = {
    "sync_key": TEXT_SPEC,
    "salesforce_id": TEXT_SPEC,
    "content_hash": TEXT_SPEC,
    "last_result": TEXT_SPEC,
    "error_code": TEXT_SPEC,
    "error_message": {"dtype": "object", "multiline": True},
    "attempted_at": UTC_INSTANT_SPEC,
    "campaign_id": TEXT_SPEC,
}
# Columns a results frame passed to record_results carries.
RESULT_COLUMNS: tuple[str, ...] = (
    "sync_key",
    "campaign_id",
    "salesforce_id",
    "content_hash",
    "last_result",
    "error_code",
    "error_message",
)


def ledger_scope(asset_keys: object) -> str:
    """The ledger scope of the sync profile that owns these asset keys: their key prefix ('' when unprefixed,
    as for the classic single profile; a CampaignSync instance's assets carry its name as prefix)."""
    prefixes = {"/".join(key.path[:-1]) for key in asset_keys}  # type: ignore[attr-defined]
    if len(prefixes) != 1:
        raise ValueError(f"assets of several sync profiles in one step: {sorted(prefixes)}")
    return prefixes.pop()


class SyncLedger:
    """Postgres table of what was last written to Salesforce, so a run sends only what changed.

    A row is written ``pending`` (with any Id already known) before a create is sent and replaced by the outcome
    right after each batch; a run that dies in between leaves ``pending`` rows, which the next run looks up in
    Salesforce before creating anything, so a crash never duplicates a record.

    ``scope`` is the sync profile the rows belong to ('' for the classic single profile, else the profile's
    name): profiles of one deployment share the table and never read or write each other's rows.

    ``source`` and ``target`` say which Mailchimp account and which Salesforce org the rows belong to
    (``mailchimp:sandbox`` / ``mailchimp:<account id>``, ``salesforce:sandbox`` / ``salesforce:<org id>``): a
    ledger only ever reads and writes its own pair's rows, so switching the source or the target (sandbox to live,
    one org to another) never takes another org's Ids or hashes for its own. Rows written before identities were
    kept (source and target '') are only a hint to a ledger with an identity: a key it does not hold yet but such a
    row does is loaded as ``pending`` without an Id, so the engine looks the record up in the org before creating
    it (in the org those rows were written for, it is adopted; in another, it is not found and created).
    """

    def __init__(
        self,
        engine: sa.Engine,
        schema: str = PIPELINE_SCHEMA,
        table: str = LEDGER_TABLE,
        scope: str = "",
        *,
        source: str = "",
        target: str = "",
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.table = table
        self.scope = scope
        self.source = source
        self.target = target
        self._qualified = f'"{schema}"."{table}"'
        with table_setup(engine, schema, table) as conn:
            conn.execute(
                sa.text(
                    f"""
                    CREATE TABLE IF NOT EXISTS {self._qualified} (
                        scope         text        NOT NULL DEFAULT '',
                        source_identity text      NOT NULL DEFAULT '',
                        target_identity text      NOT NULL DEFAULT '',
                        object_kind   text        NOT NULL,
                        sync_key      text        NOT NULL,
                        campaign_id   text,
                        salesforce_id text,
                        content_hash  text,
                        last_result   text        NOT NULL,
                        error_code    text,
                        error_message text,
                        attempted_at  timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (scope, source_identity, target_identity, object_kind, sync_key)
                    )
                    """
                )
            )
            self._add_scope_to_older_table(conn)
            self._add_identity_to_older_table(conn)
            conn.execute(
                sa.text(
                    f'CREATE INDEX IF NOT EXISTS "{table}_scope_campaign_idx" ON {self._qualified} '
                    "(scope, object_kind, campaign_id)"
                )
            )

    def _has_column(self, conn: sa.Connection, column: str) -> bool:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT 1 FROM information_schema.columns "
                    "WHERE table_schema = :schema AND table_name = :table AND column_name = :column"
                ),
                {"schema": self.schema, "table": self.table, "column": column},
            ).first()
        )

    def _replace_primary_key(self, conn: sa.Connection, columns: str) -> None:
        primary_key = conn.execute(
            sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) AND contype = 'p'"),
            {"table": self._qualified},
        ).scalar_one()
        conn.execute(sa.text(f'ALTER TABLE {self._qualified} DROP CONSTRAINT "{primary_key}"'))
        conn.execute(sa.text(f"ALTER TABLE {self._qualified} ADD PRIMARY KEY ({columns})"))

    def _add_identity_to_older_table(self, conn: sa.Connection) -> None:
        """A ledger made before rows knew their source and target: its rows keep '' (a hint, see the class)."""
        if self._has_column(conn, "source_identity"):
            return
        for column in ("source_identity", "target_identity"):
            conn.execute(sa.text(f"ALTER TABLE {self._qualified} ADD COLUMN {column} text NOT NULL DEFAULT ''"))
        self._replace_primary_key(conn, "scope, source_identity, target_identity, object_kind, sync_key")

    def _add_scope_to_older_table(self, conn: sa.Connection) -> None:
        """A ledger made before profiles had scopes: its rows become the classic profile's ('')."""
        if self._has_column(conn, "scope"):
            return
        conn.execute(sa.text(f"ALTER TABLE {self._qualified} ADD COLUMN scope text NOT NULL DEFAULT ''"))
        self._replace_primary_key(conn, "scope, object_kind, sync_key")

    def _owned(self, alias: str = "", *, pyformat: bool = False) -> str:
        """The WHERE condition of this ledger's own rows (profile scope, source and target), with SQLAlchemy's
        ``:name`` placeholders or, for psycopg2 (``query_frame``), ``%(name)s`` ones."""
        prefix = f"{alias}." if alias else ""
        scope, source, target = (
            ("%(scope)s", "%(source)s", "%(target)s") if pyformat else (":scope", ":source", ":target")
        )
        return f"{prefix}scope = {scope} AND {prefix}source_identity = {source} AND {prefix}target_identity = {target}"

    def _params(self, **more: object) -> dict[str, object]:
        return {"scope": self.scope, "source": self.source, "target": self.target, **more}

    def load(self, object_kind: str, campaign_ids: list[str] | None = None) -> pd.DataFrame:
        """Ledger rows of a kind (optionally only some campaigns), with LEDGER_COLUMNS plus error details.

        Read through COPY: a million-member campaign's rows come back without a Python tuple per row.
        """
        query = (
            f"SELECT {', '.join(_LOADED)} FROM {self._qualified} "
            f"WHERE {self._owned(pyformat=True)} AND object_kind = %(kind)s"
        )
        params: dict[str, object] = self._params(kind=object_kind)
        campaign_filter = ""
        if campaign_ids is not None:
            campaign_filter = " AND campaign_id = ANY(%(campaign_ids)s::text[])"
            params["campaign_ids"] = list(campaign_ids)
        query += campaign_filter
        if self.source or self.target:
            # Rows from before identities: keys this pair does not hold come back pending, without Id or hash.
            query += f"""
                UNION ALL
                SELECT legacy.sync_key, NULL, NULL, '{RESULT_PENDING}', NULL, NULL, legacy.attempted_at,
                       legacy.campaign_id
                FROM {self._qualified} AS legacy
                WHERE legacy.scope = %(scope)s AND legacy.source_identity = '' AND legacy.target_identity = ''
                  AND legacy.object_kind = %(kind)s AND legacy.salesforce_id IS NOT NULL
                  {campaign_filter.replace(" campaign_id =", " legacy.campaign_id =")}
                  AND NOT EXISTS (
                      SELECT 1 FROM {self._qualified} AS own
                      WHERE {self._owned("own", pyformat=True)} AND own.object_kind = legacy.object_kind
                        AND own.sync_key = legacy.sync_key
                  )
            """
        frame = query_frame(self.engine, query, params, _LOADED)
        if frame.empty:
            frame = pd.DataFrame({column: pd.Series(dtype=object) for column in frame.columns})
        return frame[[*LEDGER_COLUMNS, "error_code", "error_message", "attempted_at", "campaign_id"]]

    def load_keys(self, object_kind: str, sync_keys: list[str]) -> pd.DataFrame:
        """Ledger rows of a kind by sync key (parents shared by several campaigns, such as a parent Campaign)."""
        query = (
            f"SELECT sync_key, salesforce_id, content_hash, last_result FROM {self._qualified} "
            f"WHERE {self._owned()} AND object_kind = :kind AND sync_key = ANY(:keys)"
        )
        params = self._params(kind=object_kind, keys=list(sync_keys))
        with self.engine.connect() as conn:
            frame = pd.read_sql_query(sa.text(query), conn, params=params)
        if frame.empty:
            frame = pd.DataFrame({column: pd.Series(dtype=object) for column in LEDGER_COLUMNS})
        return frame[list(LEDGER_COLUMNS)]

    def owners(self) -> pd.DataFrame:
        """Every (source, target) pair holding rows in this table, with its row count: what state is kept for whom."""
        query = (
            f"SELECT source_identity AS source, target_identity AS target, count(*) AS rows "
            f"FROM {self._qualified} GROUP BY 1, 2 ORDER BY 1, 2"
        )
        with self.engine.connect() as conn:
            return pd.read_sql_query(sa.text(query), conn)

    def forget(self, *, source: str | None = None, target: str | None = None) -> int:
        """Delete every row (all profiles) of a source and/or a target; returns how many went."""
        if source is None and target is None:
            raise ValueError("forget needs a source or a target")
        conditions = []
        if source is not None:
            conditions.append("source_identity = :source")
        if target is not None:
            conditions.append("target_identity = :target")
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.text(f"DELETE FROM {self._qualified} WHERE {' OR '.join(conditions)}"),
                {"source": source, "target": target},
            )
        return int(result.rowcount or 0)

    def record_pending(self, object_kind: str, pending: pd.DataFrame) -> None:
        """Write intent before sending creates: the outcome of these keys is unknown until recorded."""
        rows = pending[["sync_key", "campaign_id", "content_hash"]].copy()
        rows["salesforce_id"] = pd.NA
        rows["last_result"] = RESULT_PENDING
        rows["error_code"] = pd.NA
        rows["error_message"] = pd.NA
        # A pending mark never forgets an Id we already hold (COALESCE in _upsert).
        self._upsert(object_kind, rows)

    def record_results(self, object_kind: str, results: pd.DataFrame) -> None:
        """Store the outcome of a batch (RESULT_COLUMNS): ok with the Id, or error with code and message."""
        bad = ~results["last_result"].isin([RESULT_OK, RESULT_ERROR, RESULT_PENDING])
        if bad.any():
            raise ValueError(f"unknown ledger result {results.loc[bad, 'last_result'].iloc[0]!r}")
        self._upsert(object_kind, results)

    def failures(self, object_kind: str | None = None, campaign_ids: list[str] | None = None) -> pd.DataFrame:
        """Keys whose last write failed, with Salesforce's error code and message, newest first."""
        query = (
            f"SELECT object_kind, sync_key, campaign_id, salesforce_id, error_code, error_message, attempted_at "
            f"FROM {self._qualified} WHERE {self._owned()} AND last_result = :error"
        )
        params = self._params(error=RESULT_ERROR)
        if object_kind is not None:
            query += " AND object_kind = :kind"
            params["kind"] = object_kind
        if campaign_ids is not None:
            query += " AND campaign_id = ANY(:campaign_ids)"
            params["campaign_ids"] = list(campaign_ids)
        with self.engine.connect() as conn:
            return pd.read_sql_query(sa.text(query + " ORDER BY attempted_at DESC, sync_key"), conn, params=params)

    def _upsert(self, object_kind: str, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        frame = rows[list(RESULT_COLUMNS)].copy()
        frame.insert(0, "object_kind", object_kind)
        frame.insert(0, "target_identity", self.target)
        frame.insert(0, "source_identity", self.source)
        frame.insert(0, "scope", self.scope)
        # CSV quoting copes with any text in error messages; a null is an unquoted empty field.
        buffer = copy_stream(frame)
        columns = ", ".join(("scope", "source_identity", "target_identity", "object_kind", *RESULT_COLUMNS))
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(
                    f"CREATE TEMP TABLE ledger_incoming (LIKE {self._qualified} INCLUDING DEFAULTS) ON COMMIT DROP"
                )
                cursor.copy_expert(
                    f"COPY ledger_incoming ({columns}) FROM STDIN WITH (FORMAT csv)", buffer, size=1 << 20
                )
                cursor.execute(
                    f"""
                    INSERT INTO {self._qualified} AS ledger ({columns}, attempted_at)
                    SELECT {columns}, now() FROM ledger_incoming
                    ON CONFLICT (scope, source_identity, target_identity, object_kind, sync_key) DO UPDATE SET
                        campaign_id = EXCLUDED.campaign_id,
                        salesforce_id = COALESCE(EXCLUDED.salesforce_id, ledger.salesforce_id),
                        content_hash = EXCLUDED.content_hash,
                        last_result = EXCLUDED.last_result,
                        error_code = EXCLUDED.error_code,
                        error_message = EXCLUDED.error_message,
                        attempted_at = EXCLUDED.attempted_at
                    """
                )
            finally:
                cursor.close()
            raw.commit()
        finally:
            raw.close()
