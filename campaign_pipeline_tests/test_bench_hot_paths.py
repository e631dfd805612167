"""bench.hot_paths: its references compute what the fast paths compute, so its ratios compare like with like."""

from __future__ import annotations

from bench.hot_paths import run


def test_the_fast_paths_match_their_pandas_references_row_for_row() -> None:
    results = run(3000, seed=11)
    assert results["identical"] is True
    for path in ("sort", "content_hashes", "text_check"):
        assert results[path]["identical"] is True
        assert results[path]["seconds"] >= 0 and results[path]["reference_seconds"] >= 0
