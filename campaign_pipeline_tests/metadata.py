"""Reading asset metadata back from a run the way a test asserts on it: tables as rows, per_kind by kind."""

from __future__ import annotations

from typing import Any

import dagster as dg

from campaign_pipeline.asset_metadata import table_rows


def readable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Plain values; table values as lists of row dicts, and ``per_kind`` as {kind: {count: value}}."""
    values: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.TableMetadataValue):
            rows = table_rows(value)
            values[key] = {row["kind"]: row for row in rows} if key == "per_kind" else rows
        else:
            values[key] = getattr(value, "value", value)
    return values


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The one materialization of ``asset`` in ``result``, its metadata readable."""
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return readable(dict(event.materialization.metadata))
