"""Bulk load and read pandas frames in Postgres tables, partition-scoped, with faithful dtypes."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from campaign_pipeline.storage.database import PIPELINE_SCHEMA

PARTITION_COLUMN = "_partition"
UNPARTITIONED = "__all__"
DTYPES_TABLE = "_frame_dtypes"


class FrameStorageError(RuntimeError):
    """A frame could not be stored or loaded; the message names the table, partition and reason."""


def _pg_type(dtype) -> str:
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "bigint"  # nanoseconds
    return "text"


def _dtype_spec(series: pd.Series) -> dict:
    """What is needed to rebuild the column's pandas dtype on load."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {
            "dtype": "category",
            "categories": [str(c) for c in dtype.categories],
            "ordered": bool(dtype.ordered),
        }
    if isinstance(dtype, pd.DatetimeTZDtype):
        return {"dtype": "datetime_tz", "tz": str(dtype.tz)}
    return {"dtype": str(dtype)}


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str, schema: str = PIPELINE_SCHEMA) -> str:
    return f"{_quote_ident(schema)}.{_quote_ident(table)}"


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table whose CSV form Postgres COPY reads back exactly (nulls unquoted, strings quoted)."""
    columns = {}
    for name in frame.columns:
        col = frame[name]
        dtype = col.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            col = col.astype(object).where(col.notna(), None).map(lambda v: None if v is None else str(v))
        elif pd.api.types.is_timedelta64_dtype(dtype):
            col = pd.Series(col.to_numpy().view("int64"), index=col.index).astype("Int64").mask(col.isna())
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            col = col.astype(object).where(col.notna(), None).map(lambda v: None if v is None else str(v))
        columns[str(name)] = col
    return pa.Table.from_pandas(pd.DataFrame(columns, index=None), preserve_index=False)


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table = _to_arrow(frame)
    pacsv.write_csv(
        table,
        buffer,
        write_options=pacsv.WriteOptions(include_header=False, quoting_style="all_valid"),
    )
    return buffer.getvalue()


def ensure_dtypes_table(conn, schema: str = PIPELINE_SCHEMA) -> None:
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS {qualified(DTYPES_TABLE, schema)} ("
            " table_name text NOT NULL, column_name text NOT NULL, position int NOT NULL,"
            " spec jsonb NOT NULL, PRIMARY KEY (table_name, column_name))"
        )
    )


def write_frame(
    engine: sa.Engine,
    table: str,
    frame: pd.DataFrame,
    partitions: Sequence[str] | None = None,
    partition_column: str | None = None,
    schema: str = PIPELINE_SCHEMA,
) -> int:
    """Replace the rows of `partitions` in `table` by `frame`, in one transaction; returns rows written.

    With several partitions, `partition_column` says which frame column holds each row's partition.
    Other partitions are never touched; on any error the old rows of these partitions stay as they were.
    """
    keys = list(partitions) if partitions else [UNPARTITIONED]
    if PARTITION_COLUMN in frame.columns:
        raise FrameStorageError(f"{table}: column name {PARTITION_COLUMN!r} is reserved")
    if len(keys) == 1:
        partition_values = pd.Series(keys[0], index=frame.index, dtype=object)
    else:
        if not partition_column or partition_column not in frame.columns:
            raise FrameStorageError(
                f"{table}: writing {len(keys)} partitions at once needs the frame column named by the asset's "
                f"'partition_expr' metadata (got {partition_column!r})"
            )
        partition_values = frame[partition_column].astype(str)
        stray = sorted(set(partition_values) - set(keys))
        if stray:
            raise FrameStorageError(
                f"{table}: rows for partitions {stray[:5]} outside this run's partitions {keys[:5]}"
            )
    specs = {str(c): _dtype_spec(frame[c]) for c in frame.columns}
    pg_types = {str(c): _pg_type(frame[c].dtype) for c in frame.columns}

    with engine.begin() as conn:
        # Serialise writers of one table: DDL and replace must not interleave across run workers.
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"),
            {"t": f"{schema}.{table}"},
        )
        ensure_dtypes_table(conn, schema)
        conn.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS {qualified(table, schema)} ({_quote_ident(PARTITION_COLUMN)} text NOT NULL)"
            )
        )
        existing = {
            row.column_name: row.data_type
            for row in conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = :s AND table_name = :t"
                ),
                {"s": schema, "t": table},
            )
        }
        for name, pg_type in pg_types.items():
            if name not in existing:
                conn.execute(
                    sa.text(f"ALTER TABLE {qualified(table, schema)} ADD COLUMN {_quote_ident(name)} {pg_type}")
                )
            elif _normalise_pg_type(existing[name]) != pg_type:
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {qualified(table, schema)} ALTER COLUMN {_quote_ident(name)} TYPE {pg_type} "
                        f"USING {_quote_ident(name)}::{pg_type}"
                    )
                )
        conn.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS {_quote_ident(table[:50] + '_partition_idx')} "
                f"ON {qualified(table, schema)} ({_quote_ident(PARTITION_COLUMN)})"
            )
        )
        conn.execute(
            sa.text(f"DELETE FROM {qualified(table, schema)} WHERE {_quote_ident(PARTITION_COLUMN)} = ANY(:keys)"),
            {"keys": keys},
        )
        conn.execute(
            sa.text(f"DELETE FROM {qualified(DTYPES_TABLE, schema)} WHERE table_name = :t"),
            {"t": table},
        )
        for position, (name, spec) in enumerate(specs.items()):
            conn.execute(
                sa.text(
                    f"INSERT INTO {qualified(DTYPES_TABLE, schema)} (table_name, column_name, position, spec) "
                    "VALUES (:t, :c, :p, CAST(:s AS jsonb))"
                ),
                {"t": table, "c": name, "p": position, "s": json.dumps(spec)},
            )
        if len(frame):
            payload = frame.copy()
            payload.insert(0, PARTITION_COLUMN, partition_values.to_numpy())
            column_list = ", ".join(_quote_ident(str(c)) for c in payload.columns)
            raw: Any = conn.connection.dbapi_connection  # psycopg2: COPY needs the driver's cursor
            with raw.cursor() as cursor:
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
                try:
                    cursor.copy_expert(
                        f"COPY {qualified(table, schema)} ({column_list}) FROM STDIN WITH (FORMAT csv)",
                        io.BytesIO(_csv_bytes(payload)),
                    )
                except Exception as exc:
                    raise FrameStorageError(
                        f"{schema}.{table}: writing partition(s) {keys[:5]} failed, nothing was replaced: "
                        f"{str(exc).strip().splitlines()[0]}"
                    ) from exc
    return len(frame)


def _normalise_pg_type(information_schema_type: str) -> str:
    return {
        "timestamp with time zone": "timestamptz",
        "timestamp without time zone": "timestamp",
    }.get(information_schema_type, information_schema_type)


def table_exists(engine: sa.Engine, table: str, schema: str = PIPELINE_SCHEMA) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT to_regclass(:q) IS NOT NULL"),
                {"q": f"{schema}.{table}"},
            ).scalar()
        )


def read_frame(
    engine: sa.Engine,
    table: str,
    partitions: Sequence[str] | None = None,
    schema: str = PIPELINE_SCHEMA,
) -> pd.DataFrame:
    """Rows of `partitions` (all rows when None) with the dtypes they were written with."""
    if not table_exists(engine, table, schema):
        raise FrameStorageError(
            f"{schema}.{table} does not exist yet: materialize the upstream asset for these partitions first"
        )
    with engine.connect() as conn:
        specs = {
            row.column_name: row.spec
            for row in conn.execute(
                sa.text(
                    f"SELECT column_name, spec FROM {qualified(DTYPES_TABLE, schema)} WHERE table_name = :t ORDER BY position"
                ),
                {"t": table},
            )
        }
        if not specs:
            return pd.DataFrame()
        column_list = ", ".join(_quote_ident(c) for c in specs)
        where = ""
        if partitions is not None:
            literals = ", ".join("'" + p.replace("'", "''") + "'" for p in partitions)
            where = f" WHERE {_quote_ident(PARTITION_COLUMN)} IN ({literals})" if partitions else " WHERE false"
        buffer = io.BytesIO()
        raw: Any = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            cursor.execute("SET TimeZone = 'UTC'")
            cursor.copy_expert(
                f"COPY (SELECT {column_list} FROM {qualified(table, schema)}{where}) TO STDOUT WITH (FORMAT csv)",
                buffer,
            )
    return _parse_csv(buffer.getvalue(), specs)


def _arrow_type(spec: dict) -> pa.DataType:
    dtype = spec["dtype"]
    if dtype in ("bool", "boolean"):
        return pa.bool_()
    if dtype.startswith(("int", "Int", "uint", "UInt", "timedelta")):
        return pa.int64()
    if dtype.startswith(("float", "Float")):
        return pa.float64()
    return pa.string()


def _parse_csv(data: bytes, specs: dict[str, dict]) -> pd.DataFrame:
    names = list(specs)
    if not data:
        table = pa.table({name: pa.array([], type=_arrow_type(specs[name])) for name in names})
    else:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: _arrow_type(spec) for name, spec in specs.items()},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
    columns = {}
    for name, spec in specs.items():
        columns[name] = _restore(table.column(name), spec)
    return pd.DataFrame(columns)


_NULLABLE_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.float64(): pd.Float64Dtype(),
}


def _restore(column: pa.ChunkedArray, spec: dict) -> pd.Series:
    dtype = spec["dtype"]
    if dtype == "datetime_tz":
        return pd.to_datetime(pd.Series(column.to_pandas(), dtype=object), utc=True, format="ISO8601").dt.tz_convert(
            spec["tz"]
        )
    if dtype.startswith("datetime64"):
        return pd.to_datetime(pd.Series(column.to_pandas(), dtype=object), format="ISO8601")
    if dtype == "category":
        values = pd.Series(column.to_pandas(), dtype=object)
        return pd.Series(pd.Categorical(values, categories=spec["categories"], ordered=spec["ordered"]))
    if dtype.startswith("timedelta"):
        return pd.to_timedelta(
            pd.Series(column.to_pandas(types_mapper=pd.ArrowDtype)).astype("Int64"),
            unit="ns",
        )
    if dtype == "object":
        values = column.to_pandas()
        return pd.Series(values, dtype=object).where(pd.notna(values), None)
    if dtype in ("bool", "boolean") or dtype.startswith(("int", "Int", "uint", "UInt", "float", "Float")):
        nullable = column.to_pandas(types_mapper=_NULLABLE_TYPES.get)
        return pd.Series(nullable).astype(dtype)
    # 'string' and other extension string types
    return pd.Series(column.to_pandas(), dtype=dtype)
