"""The campaign funnel and status breakdown drawn as a PNG inside Markdown metadata, for the asset page."""

from __future__ import annotations

import base64
import io

import dagster as dg
import pandas as pd

from campaign_pipeline.core.vocabulary import MEMBER_STATUSES

FUNNEL_STEPS = (
    ("Sent", "emails_sent"),
    ("Delivered", "delivered"),
    ("Opened", "unique_opens"),
    ("Clicked", "unique_subscriber_clicks"),
)
STATUS_ORDER = MEMBER_STATUSES
STATUS_COLOURS = ("#2e7d32", "#66bb6a", "#e53935", "#fb8c00", "#90a4ae")


def funnel_png(totals: pd.Series, status_counts: pd.Series, title: str) -> bytes:
    """Two panels: the sent → delivered → opened → clicked funnel, and members per latest status."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; the asset page shows the PNG
    import matplotlib.pyplot as plt

    fig, (funnel_ax, status_ax) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=90)
    labels = [label for label, _ in FUNNEL_STEPS]
    values = [int(totals.get(column, 0)) for _, column in FUNNEL_STEPS]
    funnel_ax.barh(labels[::-1], values[::-1], color="#1565c0")
    top = max(values[0], 1)
    for y, value in enumerate(values[::-1]):
        funnel_ax.text(value, y, f" {value:,} ({value / top:.0%})", va="center", fontsize=8)
    funnel_ax.set_xlim(0, top * 1.45)
    funnel_ax.set_title("Funnel", fontsize=10)
    funnel_ax.tick_params(labelsize=8)

    counts = [int(status_counts.get(status, 0)) for status in STATUS_ORDER]
    status_ax.bar(STATUS_ORDER, counts, color=STATUS_COLOURS)
    for x, value in enumerate(counts):
        status_ax.text(x, value, f"{value:,}", ha="center", va="bottom", fontsize=8)
    status_ax.set_ylim(0, max(max(counts), 1) * 1.2)
    status_ax.set_title("Members by latest status", fontsize=10)
    status_ax.tick_params(labelsize=8)

    fig.suptitle(title[:90], fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def funnel_metadata(totals: pd.Series, status_counts: pd.Series, title: str) -> dg.MarkdownMetadataValue:
    """The chart as an inline image the Dagster UI renders in the materialization's metadata."""
    encoded = base64.b64encode(funnel_png(totals, status_counts, title)).decode("ascii")
    return dg.MetadataValue.md(f"![campaign funnel](data:image/png;base64,{encoded})")
