"""Frame values on the wire: JSON payloads for REST calls and the Bulk API 2.0 CSV, and how answers compare."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd

from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.salesforce.engine.kinds import RecordKind


def wire_value(value: Any, field_type: str) -> Any:
    """A frame value as JSON for Salesforce: NA -> null, numpy scalars -> Python, instants -> ISO UTC."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        moment = value.tz_convert("UTC") if value.tzinfo else value.tz_localize("UTC")
        if field_type == "date":
            return moment.strftime("%Y-%m-%d")
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        value = int(value)
    if isinstance(value, (np.floating,)):
        value = float(value)
    if field_type == "percent" and isinstance(value, (int, float)):
        # Our rates are fractions (0..1); Salesforce percent fields hold percentages.
        return round(value * 100.0, 6)
    if field_type in ("double", "currency", "percent") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def payloads(
    kind: RecordKind, rows: pd.DataFrame, action: str, field_types: dict[str, str], create_only: set[str]
) -> list[dict]:
    """One JSON record per row: creates leave null fields unset, updates carry the Id and no create-only field."""
    fields = salesforce_field_columns(rows)
    if action == "update":
        excluded = set(kind.create_only_fields) | create_only
        fields = [name for name in fields if name not in excluded]
    values = {name: rows[name].to_numpy(dtype=object) for name in fields}
    records = []
    ids = rows["salesforce_id"].to_numpy(dtype=object)
    # A record without a parent key has no parent of ours: its parent field is left as the org has it (a Campaign
    # outside the hierarchy keeps the ParentId a user gave it), never sent as null.
    parentless = (
        rows["parent_key"].isna().to_numpy()
        if kind.parent_field in fields and "parent_key" in rows
        else np.zeros(len(rows), dtype=bool)
    )
    for position in range(len(rows)):
        record = {name: wire_value(values[name][position], field_types.get(name, "")) for name in fields}
        if parentless[position]:
            del record[str(kind.parent_field)]
        if action == "create":
            # A create leaves a null field unset rather than sending null for it.
            record = {name: value for name, value in record.items() if value is not None}
        else:
            record["Id"] = ids[position]
        records.append(record)
    return records


def _csv_value(value: Any, *, for_update: bool) -> str:
    if value is None:
        # Bulk API 2.0: an empty cell leaves a field unchanged on update; #N/A sets it to null.
        return "#N/A" if for_update else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bulk_csv(records: list[dict], *, for_update: bool) -> tuple[pd.DataFrame, list[str], str]:
    """The Bulk API 2.0 upload of ``records``: (cells as uploaded, their columns, the CSV text with LF endings).

    Updates lead with the Id column. The cells are kept: job results echo them, not our keys.
    """
    columns = list(dict.fromkeys(name for record in records for name in record))
    if for_update:
        columns = ["Id", *[name for name in columns if name != "Id"]]
    # A field a record leaves out stays as it is (an empty cell); a null it carries is #N/A on update.
    cells = pd.DataFrame(
        {
            name: [_csv_value(record[name], for_update=for_update) if name in record else "" for record in records]
            for name in columns
        }
    )
    buffer = io.StringIO()
    cells.to_csv(buffer, index=False, lineterminator="\n")
    return cells, columns, buffer.getvalue()


def read_bulk_csv(text: str) -> pd.DataFrame:
    """A Bulk API 2.0 result CSV as text cells (empty when the job returned none)."""
    if not text.strip():
        return pd.DataFrame()
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def row_identity(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One text per row joining ``columns`` (missing columns count as empty), to pair Bulk results with rows."""
    identity = pd.Series("", index=frame.index, dtype=object)
    for name in columns:
        values = frame[name].astype(str) if name in frame.columns else pd.Series("", index=frame.index)
        identity = identity + values + "\x1f"
    return identity


def same_value(desired: Any, existing: Any) -> bool:
    """Whether a wire value equals what Salesforce holds (numbers within rounding, the rest as text)."""
    if desired is None or existing is None:
        return desired is None and existing is None
    if isinstance(desired, (int, float)) and isinstance(existing, (int, float)) and not isinstance(desired, bool):
        return math.isclose(float(desired), float(existing), rel_tol=1e-9, abs_tol=1e-9)
    return str(desired) == str(existing)


def none_if_na(value: Any) -> Any:
    return None if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)) else value


def blob_bytes(rows: pd.DataFrame, field_types: dict[str, str]) -> pd.Series:
    """Decoded bytes of each row's base64 (blob) field values: the file storage they take."""
    total = pd.Series(0, index=rows.index, dtype="int64")
    for name in salesforce_field_columns(rows):
        if field_types.get(name) != "base64":
            continue
        encoded = rows[name][rows[name].notna()].astype(str)
        if len(encoded):
            sizes = encoded.str.len() * 3 // 4 - encoded.str[-2:].str.count("=")
            total = total.add(sizes.astype("int64"), fill_value=0).astype("int64")
    return total
