"""Benchmark of the vectorised hot paths against the plain pandas they replace, checked identical in the same run.

    python -m bench.hot_paths --rows 1000000

Prints one JSON object with, per path, the reference's seconds, ours, their ratio (reference / ours) and whether
the results are identical (the run exits 1 if any is not):

- ``sort``: desired members' order (sync key, latest status time descending, email id) by ``sort_positions``
  against pandas' ``sort_values``.
- ``content_hashes``: ``content_hashes`` against the column-wise string concatenation it replaced, digest for digest.
- ``text_check``: the ``Text`` dtype check of a text column against pandera's per-value ``str`` check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pandera.engines import pandas_engine

from campaign_pipeline.core.diff import canonical_text, content_hashes
from campaign_pipeline.core.ordering import sort_positions
from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.core.schemas import Text


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return round(time.perf_counter() - started, 3), result


def _members(rows: int, seed: int) -> pd.DataFrame:
    """Desired CampaignMember-like rows: unique sync keys but for 1% shared people, statuses, counts, minutes."""
    generator = np.random.default_rng(seed)
    person = np.where(generator.random(rows) < 0.01, generator.integers(0, 1000, rows), generator.permutation(rows))
    instants = pd.Series(
        pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(generator.integers(0, 5 * 86400, rows), unit="s")
    )
    instants[generator.random(rows) < 0.05] = pd.NaT
    minutes = np.where(generator.random(rows) < 0.5, np.nan, generator.random(rows) * 600)
    return pd.DataFrame(
        {
            "sync_key": np.array([f"c1|003{value:015d}" for value in person], dtype=object),
            "campaign_id": "c1",
            "parent_key": "c1",
            "email_id": np.array([f"{value:032x}" for value in generator.permutation(rows)], dtype=object),
            "latest_status_at": instants,
            "ContactId": np.array([f"003{value:015d}" for value in person], dtype=object),
            "Status": np.array(["Sent", "Opened", "Clicked"], dtype=object)[generator.integers(0, 3, rows)],
            "Total_Opens__c": pd.Series(generator.integers(0, 5, rows), dtype=object),
            "Minutes__c": pd.Series(minutes, dtype=object).where(~np.isnan(minutes), pd.NA),
        }
    )


def _reference_hashes(desired: pd.DataFrame) -> pd.Series:
    # The definition: name\x1fvalue\x1e per field in name order, then parent\x1f and the parent key, built column by
    # column with pandas string concatenation, hashed by hash_pandas_object and printed as 16 hex digits.
    row_text = pd.Series("", index=desired.index, dtype=object)
    for field_name in sorted(salesforce_field_columns(desired)):
        row_text = row_text + field_name + "\x1f" + canonical_text(desired[field_name]) + "\x1e"
    row_text = row_text + "parent\x1f" + desired["parent_key"].astype(object).where(desired["parent_key"].notna(), "")
    digests = pd.util.hash_pandas_object(row_text.astype(str), index=False)
    return pd.Series([f"{value:016x}" for value in digests.to_numpy()], index=desired.index, dtype=object)


def run(rows: int, seed: int = 7) -> dict[str, Any]:
    members = _members(rows, seed)
    keys = ["sync_key", "latest_status_at", "email_id"]
    results: dict[str, Any] = {"rows": rows}

    reference_s, reference_order = _timed(
        lambda: members.sort_values(keys, ascending=[True, False, True], na_position="last").index.to_numpy()
    )
    ours_s, our_order = _timed(lambda: sort_positions(members, keys, descending=["latest_status_at"]))
    results["sort"] = _entry(reference_s, ours_s, bool(np.array_equal(reference_order, our_order)))

    desired = members.drop(columns=["email_id", "latest_status_at"]).drop_duplicates("sync_key")
    reference_s, reference_digests = _timed(lambda: _reference_hashes(desired))
    ours_s, our_digests = _timed(lambda: content_hashes(desired))
    results["content_hashes"] = _entry(reference_s, ours_s, bool(reference_digests.equals(our_digests)))

    column = members["email_id"]
    panderas_str, text = pandas_engine.Engine.dtype(str), pandas_engine.Engine.dtype(Text)
    reference_s, reference_check = _timed(lambda: panderas_str.check(panderas_str, column))
    ours_s, our_check = _timed(lambda: text.check(text, column))
    results["text_check"] = _entry(reference_s, ours_s, list(reference_check) == list(our_check))
    results["identical"] = all(results[path]["identical"] for path in ("sort", "content_hashes", "text_check"))
    return results


def _entry(reference_s: float, ours_s: float, identical: bool) -> dict[str, Any]:
    return {
        "reference_seconds": reference_s,
        "seconds": ours_s,
        "ratio": round(reference_s / ours_s, 2) if ours_s else None,
        "identical": identical,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    results = run(args.rows)
    print(json.dumps(results))
    return 0 if results["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
