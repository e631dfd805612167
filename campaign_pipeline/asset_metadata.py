"""What asset pages show besides numbers: frames as Markdown preview tables."""

from __future__ import annotations

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 10


def preview_table(
    frame: pd.DataFrame,
    rows: int | None = PREVIEW_ROWS,
    columns: list[str] | None = None,
    max_chars: int | None = None,
) -> dg.MarkdownMetadataValue:
    """The first `rows` rows (all when None) of `columns` as a Markdown table; cells cut to `max_chars`."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    shown = frame[columns] if columns else frame
    if rows is not None:
        shown = shown.head(rows)
    cells = shown.astype(str)
    if max_chars is not None:
        cells = cells.apply(lambda column: column.str.slice(0, max_chars))
    return dg.MetadataValue.md(cells.to_markdown(index=False))
