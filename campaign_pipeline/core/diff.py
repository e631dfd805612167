"""Desired Salesforce records against the sync ledger: what to create, update, leave alone or retry."""

from __future__ import annotations

import numpy as np
import pandas as pd

from campaign_pipeline.core.events import iso_utc_strings
from campaign_pipeline.core.salesforce_records import salesforce_field_columns

# Ledger results: the record is in Salesforce as hashed; the last write failed; a write was started but its
# outcome is unknown (the run stopped between sending and recording), so the record may exist already.
RESULT_OK = "ok"
RESULT_ERROR = "error"
RESULT_PENDING = "pending"

ACTIONS: tuple[str, ...] = ("create", "update", "unchanged", "rejected")
LEDGER_COLUMNS: tuple[str, ...] = (
    "sync_key",
    "salesforce_id",
    "content_hash",
    "last_result",
)


def canonical_text(values: pd.Series) -> pd.Series:
    """Values as the text they hash by, so a frame that went through storage (other dtypes) hashes the same.

    Missing values are empty text, as Salesforce treats a blank field (earlier releases meant NUL here, but numpy
    drops a trailing NUL, so their ledgers hold the empty-text hashes and the empty text stays).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True)
        return iso_utc_strings(stamps).fillna("")
    if pd.api.types.is_bool_dtype(values.dtype) and not values.isna().any():
        return pd.Series(np.where(values.to_numpy(dtype=bool), "true", "false"), index=values.index)
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype("int64").astype(str)
    as_object = values.astype(object)
    missing = as_object.isna().to_numpy()
    present = as_object.to_numpy()[~missing]
    text = np.full(len(as_object), "", dtype=object)
    text[~missing] = _present_text(present)
    return pd.Series(text, index=values.index, dtype=object)


def _one_text(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        # Integral floats (a count that became float after a NaN) hash like the integer.
        return repr(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value.tzinfo else value.isoformat()
    return str(value)


def _present_text(present: np.ndarray) -> np.ndarray:
    """``_one_text`` of each value (none missing), vectorised for the columns desired records hold: all text, all
    integers, all floats or all booleans. Anything else, or a number numpy cannot hold exactly, goes value by value.
    """
    kind = pd.api.types.infer_dtype(present, skipna=False)
    if kind == "string":
        return np.array([str(value) for value in present], dtype=object) if _has_str_subclass(present) else present
    if kind == "boolean":
        return np.where(present.astype(bool), "true", "false").astype(object)
    if kind == "integer":
        try:
            return present.astype(np.int64).astype(str).astype(object)
        except OverflowError:
            pass
    if kind == "floating":
        numbers = present.astype(np.float64)
        # Integral floats print as integers (repr(int(value))); int64 holds them exactly below 2**53.
        whole = np.isfinite(numbers) & (numbers == np.trunc(numbers))
        exact = whole & (np.abs(numbers) < 2.0**53)
        text = np.empty(len(numbers), dtype=object)
        text[exact] = numbers[exact].astype(np.int64).astype(str).astype(object)
        text[whole & ~exact] = [repr(int(value)) for value in numbers[whole & ~exact].tolist()]
        text[~whole] = list(map(repr, numbers[~whole].tolist()))
        return text
    return np.array([_one_text(value) for value in present], dtype=object)


def _has_str_subclass(present: np.ndarray) -> bool:
    # str(value) of a str subclass (numpy's str_ included) is the plain str; plain str values are kept as they are.
    return any(kind is not str for kind in set(map(type, present)))


def content_hashes(desired: pd.DataFrame) -> pd.Series:
    """A hex digest per row of its Salesforce field names and values; a changed value or mapping changes it."""
    fields = sorted(salesforce_field_columns(desired))
    if desired.empty:
        return pd.Series([], index=desired.index, dtype=object)
    # Field names are part of the hash so that mapping a metric to another field counts as a change. A row's text is
    # name\x1fvalue\x1e per field, then parent\x1f and its parent key: one %-format per row (a column-wise string
    # concatenation builds every intermediate string, four times per field).
    texts = [canonical_text(desired[field_name]).to_numpy() for field_name in fields]
    if "parent_key" in desired:
        parent = desired["parent_key"].astype(object).where(desired["parent_key"].notna(), "").to_numpy()
    else:
        parent = np.full(len(desired), "", dtype=object)
    template = "".join(field_name.replace("%", "%%") + "\x1f%s\x1e" for field_name in fields) + "parent\x1f%s"
    row_text = pd.Series(
        [template % row for row in zip(*texts, parent, strict=True)], index=desired.index, dtype=object
    )
    # hash_pandas_object is vectorised and seeded with a fixed key, so digests are stable across processes;
    # categorizing first only pays when values repeat, and row texts are unique.
    digests = pd.util.hash_pandas_object(row_text, index=False, categorize=False).to_numpy(dtype=np.uint64)
    # Each digest as 16 lower-case hex digits (f"{value:016x}"), formatted in one pass over the big-endian bytes.
    hex_digits = np.frombuffer(digests.astype(">u8").tobytes().hex().encode("ascii"), dtype="S16")
    return pd.Series(hex_digits.astype(str).astype(object), index=desired.index, dtype=object)


def diff_against_ledger(desired: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
    """Each desired record with its ``action`` (create / update / unchanged / rejected) and why.

    ``ledger`` has one row per sync key last written (LEDGER_COLUMNS). Added columns: ``content_hash``,
    ``salesforce_id`` (known Id or NA), ``action``, ``is_retry`` (the last write failed) and ``needs_lookup``
    (a create whose earlier attempt has an unknown outcome: look the record up before creating it again).
    """
    if desired["sync_key"].duplicated().any():
        doubled = desired.loc[desired["sync_key"].duplicated(), "sync_key"].iloc[0]
        raise ValueError(f"desired records hold sync key {doubled!r} more than once")
    result = desired.copy()
    result["content_hash"] = content_hashes(desired)
    known = ledger[list(LEDGER_COLUMNS)].rename(
        columns={
            "content_hash": "ledger_hash",
            "salesforce_id": "salesforce_id",
            "last_result": "ledger_result",
        }
    )
    result = result.merge(known, on="sync_key", how="left")
    has_id = result["salesforce_id"].notna()
    in_ledger = result["ledger_result"].notna()
    last_ok = (result["ledger_result"] == RESULT_OK).fillna(False).astype(bool)
    same_hash = (result["ledger_hash"] == result["content_hash"]).fillna(False).astype(bool)
    rejected = result["reject_reason"].notna() if "reject_reason" in result else pd.Series(False, index=result.index)

    result["action"] = np.select(
        [rejected, ~has_id, last_ok & same_hash],
        ["rejected", "create", "unchanged"],
        default="update",
    )
    result["is_retry"] = (in_ledger & (result["ledger_result"] == RESULT_ERROR)).fillna(False).astype(bool)
    result["needs_lookup"] = (
        (result["action"] == "create") & (result["ledger_result"] == RESULT_PENDING).fillna(False)
    ).astype(bool)
    result["salesforce_id"] = result["salesforce_id"].astype(object).where(has_id, pd.NA)
    return result.drop(columns=["ledger_hash", "ledger_result"])


def summarise_actions(diffed: pd.DataFrame) -> dict[str, int]:
    """Counts per action plus retries, for run metadata."""
    counts = diffed["action"].value_counts()
    summary = {action: int(counts.get(action, 0)) for action in ACTIONS}
    summary["retries"] = int(diffed["is_retry"].sum())
    return summary
