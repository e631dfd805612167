"""bench.salesforce_sync reports the same JSON keys in every mode; mode notes adds its file storage (slow: 4 runs)."""

from __future__ import annotations

import pytest

from bench import salesforce_activity, salesforce_sync


@pytest.mark.slow
def test_every_mode_reports_the_same_keys_and_notes_adds_file_bytes() -> None:
    results = {mode: salesforce_sync.run(300, mode, 2000, 7, 0.9) for mode in ("campaign", "campaign_totals")} | {
        mode: salesforce_activity.run(mode, 300, 2.2, 0.8, 2000, 11) for mode in ("activity", "notes")
    }
    keys = set(results["campaign"])
    for mode, result in results.items():
        extra = {"notes_format", "file_bytes", "noop_file_bytes"} if mode == "notes" else set()
        assert set(result) == keys | extra, mode
        assert result["failed"] == 0 and result["noop_write_calls"] == 0, mode
        assert result["records"] == sum(result["records_by_kind"].values()) > 0, mode
    notes = results["notes"]
    assert notes["file_bytes"] > 0 and notes["noop_file_bytes"] == 0
    # One more open for 1% of the members: their notes change (updated in place), nothing else is written.
    assert notes["updated"] > 0 and 0 < notes["update_write_calls"] < notes["write_calls"]
