"""The vectorised paths of hot functions agree with their plain definitions on any input, not only on typical ones."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera.engines import pandas_engine

from campaign_pipeline.core import diff
from campaign_pipeline.core.ordering import sort_positions
from campaign_pipeline.core.schemas import Text

FAST_PATH_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# No NUL: pandas' sort reads text as C strings, ending at a NUL, so it ties "a" with "a\x00b"; by code point (and
# Arrow) they differ. Keys here (sync keys, email and event ids) never hold one.
texts = st.one_of(st.none(), st.sampled_from(["", "a", "A", "ab", "b", "é", "z|1", "Ω", "a b"]))
instants = st.one_of(
    st.none(), st.integers(0, 5).map(lambda hour: pd.Timestamp("2026-01-05", tz="UTC") + pd.Timedelta(hours=hour))
)
numbers = st.one_of(st.none(), st.just(math.nan), st.integers(-3, 3).map(float), st.sampled_from([0.5, -1.25, 1e20]))


@FAST_PATH_SETTINGS
@given(
    st.lists(st.tuples(texts, instants, numbers), max_size=40),
    st.sets(st.sampled_from(["text", "instant", "number"])),
    st.permutations(["text", "instant", "number"]),
)
def test_sort_positions_orders_like_a_stable_pandas_sort(rows, descending, keys):
    frame = pd.DataFrame(rows, columns=["text", "instant", "number"]).astype({"text": object, "number": float})
    frame["instant"] = pd.to_datetime(frame["instant"], utc=True)
    expected = frame.sort_values(
        keys, ascending=[key not in descending for key in keys], na_position="last", kind="stable"
    ).index.to_numpy()
    used = set(descending) & set(keys)
    assert sort_positions(frame, keys, descending=used).tolist() == expected.tolist()


def _each_value(values: pd.Series) -> list[str]:
    # The definition: each present value through the per-value rule, missing ones as empty text.
    return ["" if pd.isna(value) else diff._one_text(value) for value in values.astype(object)]


column_values = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=20),
    st.lists(st.one_of(st.none(), st.integers(-(2**70), 2**70)), max_size=20),
    st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**60), 2**60).map(float)),
        max_size=20,
    ),
    st.lists(st.one_of(st.none(), st.booleans()), max_size=20),
    st.lists(st.one_of(st.none(), st.text(max_size=2), st.integers(-5, 5), st.floats(), st.booleans()), max_size=20),
)


@FAST_PATH_SETTINGS
@given(column_values)
def test_canonical_text_of_object_columns_is_each_values_text(values):
    column = pd.Series(values, dtype=object)
    assert diff.canonical_text(column).tolist() == _each_value(column)


def test_canonical_text_keeps_numpy_scalars_and_str_subclasses_to_their_plain_text() -> None:
    column = pd.Series([np.str_("x"), "y", None], dtype=object)
    assert diff.canonical_text(column).tolist() == ["x", "y", ""]
    assert all(type(value) is str for value in diff.canonical_text(column))
    floats = pd.Series([np.float32(0.1), np.float64(3.0), np.float64(2.0**60)], dtype=object)
    assert diff.canonical_text(floats).tolist() == [repr(float(np.float32(0.1))), "3", str(2**60)]


@FAST_PATH_SETTINGS
@given(column_values)
def test_text_dtype_check_agrees_with_panderas_per_value_str_check(values):
    column = pd.Series(values, dtype=object)
    fast = Text().check(Text(), column)
    per_value = pandas_engine.NpString().check(pandas_engine.NpString(), column)
    assert list(fast) == list(per_value)
