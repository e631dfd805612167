"""Asset frames in Postgres: faithful dtypes, partition-scoped and atomic replace, the Dagster IO manager."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.storage.frames import FrameStorageError, read_frame, write_frame
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager


def every_dtype_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_at": pd.to_datetime(
                ["2026-01-01T10:00:00.123456+02:00", None, "2026-03-01T00:00:00Z"], utc=True, format="ISO8601"
            ),
            "naive_at": pd.to_datetime(["2026-01-01 10:00", None, "2026-03-01 00:00"]),
            "count": np.array([1, 2, 3], dtype="int64"),
            "nullable_count": pd.array([1, None, 2**60], dtype="Int64"),
            "flag": [True, False, True],
            "nullable_flag": pd.array([True, None, False], dtype="boolean"),
            "status": pd.Categorical(["Sent", "Opened", None], categories=["Clicked", "Opened", "Sent"], ordered=True),
            "label": pd.array(["a", "", None], dtype="string"),
            "text": ['comma, "quote"\nnewline', "", None],
            "unicode": ["Zoë@Exämple.com", "日本", "\\N"],
            "rate": [1.5, np.nan, -0.0],
            "delay": pd.to_timedelta(["1s", None, "2h"]),
        }
    )


def test_every_dtype_round_trips(pg_engine):
    frame = every_dtype_frame()
    write_frame(pg_engine, "t_dtypes", frame, ["p1"])
    pd.testing.assert_frame_equal(read_frame(pg_engine, "t_dtypes", ["p1"]), frame)


def test_empty_frame_round_trips_with_dtypes(pg_engine):
    frame = every_dtype_frame().iloc[:0]
    write_frame(pg_engine, "t_empty", frame, ["p1"])
    loaded = read_frame(pg_engine, "t_empty", ["p1"])
    assert len(loaded) == 0
    assert dict(loaded.dtypes) == dict(frame.dtypes)


def test_replacing_one_partition_leaves_others_untouched(pg_engine):
    write_frame(pg_engine, "t_parts", pd.DataFrame({"v": [1, 2]}), ["a"])
    write_frame(pg_engine, "t_parts", pd.DataFrame({"v": [10, 20, 30]}), ["b"])
    write_frame(pg_engine, "t_parts", pd.DataFrame({"v": [3]}), ["a"])
    assert read_frame(pg_engine, "t_parts", ["a"])["v"].tolist() == [3]
    assert read_frame(pg_engine, "t_parts", ["b"])["v"].tolist() == [10, 20, 30]
    assert sorted(read_frame(pg_engine, "t_parts", ["a", "b"])["v"]) == [3, 10, 20, 30]


def test_failure_mid_write_keeps_the_old_partition(pg_engine):
    write_frame(pg_engine, "t_atomic", pd.DataFrame({"email": ["old@example.com", "kept@example.com"]}), ["a"])
    # Postgres refuses NUL in text: the COPY fails on the second row, after the DELETE ran in the same transaction.
    bad = pd.DataFrame({"email": ["new@example.com", "bro\x00ken@example.com", "late@example.com"]})
    with pytest.raises(FrameStorageError, match="t_atomic.*partition.*nothing was replaced"):
        write_frame(pg_engine, "t_atomic", bad, ["a"])
    assert read_frame(pg_engine, "t_atomic", ["a"])["email"].tolist() == ["old@example.com", "kept@example.com"]


def test_several_partitions_split_by_partition_column(pg_engine):
    frame = pd.DataFrame({"campaign_id": ["c1", "c2", "c2"], "v": [1, 2, 3]})
    write_frame(pg_engine, "t_multi", frame, ["c1", "c2"], partition_column="campaign_id")
    assert read_frame(pg_engine, "t_multi", ["c2"])["v"].tolist() == [2, 3]
    with pytest.raises(FrameStorageError, match="outside this run's partitions"):
        write_frame(pg_engine, "t_multi", frame, ["c1", "c3"], partition_column="campaign_id")
    with pytest.raises(FrameStorageError, match="partition_expr"):
        write_frame(pg_engine, "t_multi", frame, ["c1", "c2"])


def test_column_type_change_is_migrated(pg_engine):
    write_frame(pg_engine, "t_migrate", pd.DataFrame({"n": [1, 2]}), ["a"])
    write_frame(pg_engine, "t_migrate", pd.DataFrame({"n": [1.5]}), ["b"])
    assert read_frame(pg_engine, "t_migrate", ["b"])["n"].tolist() == [1.5]
    assert read_frame(pg_engine, "t_migrate", ["a"])["n"].tolist() == [1.0, 2.0]


def test_reading_a_missing_table_says_what_to_do(pg_engine):
    with pytest.raises(FrameStorageError, match="materialize the upstream asset"):
        read_frame(pg_engine, "t_never_written", ["x"])


campaigns = dg.DynamicPartitionsDefinition(name="io_test_campaigns")


@dg.asset(partitions_def=campaigns, metadata={"partition_expr": "campaign_id"})
def members(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": list(context.partition_keys),
            "opened_at": pd.Timestamp("2026-01-01", tz="UTC"),
            "opens": pd.array([None] * len(context.partition_keys), dtype="Int64"),
        }
    )


@dg.asset(partitions_def=campaigns)
def member_count(members: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"campaign_id": members["campaign_id"].unique(), "n": [len(members)]})


@dg.asset
def all_members(members: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"n": [len(members)]})


def test_io_manager_partitioned_and_unpartitioned_on_dagster(dagster_instance, pg_engine):
    dagster_instance.add_dynamic_partitions("io_test_campaigns", ["c1", "c2"])
    resources = {"io_manager": PostgresPandasIOManager()}
    for key in ("c1", "c2"):
        result = dg.materialize(
            [members, member_count], partition_key=key, instance=dagster_instance, resources=resources
        )
        assert result.success
    loaded = read_frame(pg_engine, "asset_members", ["c2"])
    assert loaded["campaign_id"].tolist() == ["c2"]
    assert str(loaded["opened_at"].dtype) == "datetime64[ns, UTC]"
    assert str(loaded["opens"].dtype) == "Int64"
    assert read_frame(pg_engine, "asset_member_count", ["c1"])["n"].tolist() == [1]
    result = dg.materialize(
        [members.to_source_asset(), all_members],
        instance=dagster_instance,
        resources=resources,
        selection=[all_members],
    )
    assert result.success
    assert read_frame(pg_engine, "asset_all_members")["n"].tolist() == [2]
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM campaign_pipeline.asset_members")).scalar() == 2


def test_cells_of_any_size_round_trip(pg_engine):
    """A 25 MB sent email and 32 KB note bodies (past pyarrow's CSV block) load back byte for byte."""
    html = "<html>" + ('<p>Zoë, "quoted", line\nbreak</p>' * 800_000)[: 25 * 1024 * 1024] + "</html>"
    note = "x" * 32_000
    frame = pd.DataFrame(
        {"campaign_id": ["big", "big", "big"], "html": [html, "<p>small</p>", None], "body": [note, note, ""]}
    )
    write_frame(pg_engine, "t_big_cells", frame, ["big"])
    loaded = read_frame(pg_engine, "t_big_cells", ["big"])
    pd.testing.assert_frame_equal(loaded, frame)
    assert len(loaded.loc[0, "html"].encode()) > 25 * 1024 * 1024


def test_reading_only_some_columns(pg_engine):
    frame = every_dtype_frame()
    write_frame(pg_engine, "t_columns", frame, ["p1"])
    loaded = read_frame(pg_engine, "t_columns", ["p1"], columns=["status", "count"])
    pd.testing.assert_frame_equal(loaded, frame[["status", "count"]])
    with pytest.raises(FrameStorageError, match="no column.*'nope'"):
        read_frame(pg_engine, "t_columns", ["p1"], columns=["nope"])


def test_large_frames_stream_in_chunks(pg_engine, monkeypatch):
    from campaign_pipeline.storage import frames

    monkeypatch.setattr(frames, "_CSV_CHUNK_ROWS", 7)
    frame = pd.DataFrame({"n": range(100), "s": [f"row {i}" for i in range(100)]})
    write_frame(pg_engine, "t_chunks", frame, ["p"])
    pd.testing.assert_frame_equal(read_frame(pg_engine, "t_chunks", ["p"]), frame)


def test_each_partition_key_is_a_postgres_partition(pg_engine):
    from campaign_pipeline.storage.frames import partition_table

    write_frame(pg_engine, "t_layout", pd.DataFrame({"v": [1, 2]}), ["it's"])
    write_frame(pg_engine, "t_layout", pd.DataFrame({"v": [3]}), ["other"])
    write_frame(pg_engine, "t_layout", pd.DataFrame({"v": [4]}), ["it's"])
    with pg_engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT count(*) FROM campaign_pipeline.{partition_table('t_layout', 'it' + chr(39) + 's')}")
        ).scalar()
        kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 't_layout'")).scalar()
    assert (rows, kind) == (1, "p")
    assert read_frame(pg_engine, "t_layout", ["it's"])["v"].tolist() == [4]


def test_a_table_of_the_older_single_heap_layout_is_moved_into_partitions(pg_engine):
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE campaign_pipeline.t_legacy (_partition text NOT NULL, v bigint)"))
        conn.execute(sa.text("INSERT INTO campaign_pipeline.t_legacy VALUES ('a', 1), ('b', 2), ('b', 3)"))
    write_frame(pg_engine, "t_legacy", pd.DataFrame({"v": [10]}), ["a"])
    assert read_frame(pg_engine, "t_legacy", ["a"])["v"].tolist() == [10]
    assert read_frame(pg_engine, "t_legacy", ["b"])["v"].tolist() == [2, 3]


@dg.asset(partitions_def=campaigns, metadata={"partition_expr": "campaign_id"})
def keyed_members(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """Rows carry the campaign id of their partition key, as the pipeline's per-campaign frames do."""
    return pd.DataFrame({"campaign_id": [campaign_id_from_key(key) for key in context.partition_keys], "opens": 1})


@dg.asset(partitions_def=campaigns)
def keyed_member_ids(keyed_members: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"campaign_id": keyed_members["campaign_id"]})


def test_campaign_partitions_are_stored_by_campaign_id_whatever_the_key_shape(dagster_instance, pg_engine):
    """A frame written under a bare-id key of before loads under the dated key that replaced it, and a batched
    run of dated keys splits its frame by the campaign_id column (values are campaign ids, not keys)."""
    resources = {"io_manager": PostgresPandasIOManager()}
    dagster_instance.add_dynamic_partitions("io_test_campaigns", ["abc123"])
    assert dg.materialize([keyed_members], partition_key="abc123", instance=dagster_instance, resources=resources)
    dated = "2026-11-03_newsletter-3-last-chance_abc123"
    dagster_instance.add_dynamic_partitions("io_test_campaigns", [dated])
    dagster_instance.delete_dynamic_partition("io_test_campaigns", "abc123")
    result = dg.materialize(
        [keyed_members.to_source_asset(), keyed_member_ids],
        partition_key=dated,
        instance=dagster_instance,
        resources=resources,
        selection=[keyed_member_ids],
    )
    assert result.success
    assert read_frame(pg_engine, "asset_keyed_member_ids", ["abc123"])["campaign_id"].tolist() == ["abc123"]

    batch = ["2026-11-04_a_def456", "2026-11-05_b_ghi789"]
    dagster_instance.add_dynamic_partitions("io_test_campaigns", batch)
    result = dg.materialize(
        [keyed_members],
        instance=dagster_instance,
        resources=resources,
        tags={"dagster/asset_partition_range_start": batch[0], "dagster/asset_partition_range_end": batch[-1]},
    )
    assert result.success
    assert read_frame(pg_engine, "asset_keyed_members", ["ghi789"])["campaign_id"].tolist() == ["ghi789"]
    assert read_frame(pg_engine, "asset_keyed_members", [batch[-1]]).empty  # never stored under the key itself


def _child_file(engine: sa.Engine, table: str, key: str) -> int:
    """The partition's storage file: TRUNCATE gives it a new one, so an unchanged number means nothing was written."""
    from campaign_pipeline.storage.frames import partition_table

    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT relfilenode FROM pg_class WHERE relname = :t"), {"t": partition_table(table, key)}
        ).scalar_one()


def test_writing_the_frame_a_partition_holds_already_writes_nothing(pg_engine):
    frame = every_dtype_frame()
    write_frame(pg_engine, "t_same", frame, ["p1"])
    stored = _child_file(pg_engine, "t_same", "p1")
    assert write_frame(pg_engine, "t_same", frame.copy(), ["p1"]) == 3
    assert _child_file(pg_engine, "t_same", "p1") == stored
    pd.testing.assert_frame_equal(read_frame(pg_engine, "t_same", ["p1"]), frame)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(count=f["count"].replace(2, 4)),  # one value
        lambda f: f.assign(text=f["text"].where(f["text"].notna(), "None")),  # a null becomes the text "None"
        lambda f: f.assign(rate=f["rate"].fillna(0.0)),  # NaN becomes 0.0
        lambda f: f.assign(count=f["count"].astype("float64")),  # same numbers, another dtype
        lambda f: f.iloc[:2],  # a row fewer
        lambda f: f[list(reversed(f.columns))],  # the columns in another order
        lambda f: f.assign(extra=1),  # a column more
    ],
)
def test_any_change_is_written(pg_engine, change):
    frame = every_dtype_frame()
    write_frame(pg_engine, "t_changed", frame, ["p1"])
    changed = change(frame.copy())
    write_frame(pg_engine, "t_changed", changed, ["p1"])
    pd.testing.assert_frame_equal(read_frame(pg_engine, "t_changed", ["p1"]), changed)


def test_rows_changed_behind_the_writer_or_by_a_batched_write_are_written_again(pg_engine):
    frame = pd.DataFrame({"campaign_id": ["c1", "c1"], "v": [1, 2]})
    write_frame(pg_engine, "t_behind", frame, ["c1"])
    with pg_engine.begin() as conn:  # e.g. the sandbox reset deleting a campaign's rows
        conn.execute(sa.text("DELETE FROM campaign_pipeline.t_behind WHERE v = 1"))
    write_frame(pg_engine, "t_behind", frame, ["c1"])
    assert read_frame(pg_engine, "t_behind", ["c1"])["v"].tolist() == [1, 2]

    # A batched write replaces c1 with other rows; writing the first frame again must then restore it.
    batch = pd.DataFrame({"campaign_id": ["c1", "c2"], "v": [7, 8]})
    write_frame(pg_engine, "t_behind", batch, ["c1", "c2"], partition_column="campaign_id")
    write_frame(pg_engine, "t_behind", frame, ["c1"])
    assert read_frame(pg_engine, "t_behind", ["c1"])["v"].tolist() == [1, 2]
    assert read_frame(pg_engine, "t_behind", ["c2"])["v"].tolist() == [8]

    # Another partition's write changing the table's columns: the unchanged frame is still written back whole.
    write_frame(pg_engine, "t_behind", pd.DataFrame({"campaign_id": ["c2"], "v": [9], "w": ["x"]}), ["c2"])
    write_frame(pg_engine, "t_behind", frame, ["c1"])
    pd.testing.assert_frame_equal(read_frame(pg_engine, "t_behind", ["c1"]), frame)
