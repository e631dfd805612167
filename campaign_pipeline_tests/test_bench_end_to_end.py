"""bench.end_to_end on a small campaign: the promised JSON, with the emulators outside the run's process."""

from __future__ import annotations

import json

import pytest

from bench import end_to_end
from campaign_pipeline.storage import database

pytestmark = pytest.mark.slow


def test_small_end_to_end_prints_the_promised_json(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    assert end_to_end.main(["--recipients", "400", "--mode", "campaign"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["success"] is True and result["recipients"] == 400
    # Both emulators served from processes of their own, each with its own memory.
    assert result["peak_rss_mb"] == max(result["first_peak_rss_mb"], result["noop_peak_rss_mb"]) > 0
    assert set(result["noop_peak_rss_mb_by_asset"]) == set(result["peak_rss_mb_by_asset"])
    assert set(result["emulator_peak_rss_mb"]) == {"mailchimp", "salesforce"}
    assert all(peak > 0 for peak in result["emulator_peak_rss_mb"].values())
    # Requests reached both APIs and their waits were timed, never more than the run's wall time.
    assert result["mailchimp_calls"] >= result["mailchimp_min_calls"] > 0
    assert result["api_wait_by_api"]["mailchimp"] > 0 and result["api_wait_by_api"]["salesforce"] > 0
    assert 0 < result["api_wait_seconds"] < result["seconds"]
    assert result["own_seconds"] == pytest.approx(result["seconds"] - result["api_wait_seconds"], abs=0.02)
    assert 0 < result["own_fraction"] < 1
    assert set(result["own_seconds_by_asset"]) == set(result["seconds_by_asset"])
    for step, seconds in result["seconds_by_asset"].items():
        assert 0 <= result["own_seconds_by_asset"][step] <= seconds + 0.01, step
    assert result["salesforce_write_calls"] >= result["salesforce_min_write_calls"] > 0
    assert result["salesforce_read_calls"] > 0 and result["noop_salesforce_calls"] > 0
    # The requests the run sent, by kind, are the calls the org counted (no retries in a clean run).
    assert sum(result["salesforce_requests_by_kind"].values()) == (
        result["salesforce_read_calls"] + result["salesforce_write_calls"]
    )
    assert sum(result["noop_salesforce_requests_by_kind"].values()) == result["noop_salesforce_calls"]
    assert sum(result["salesforce_requests_by_asset"].values()) <= sum(result["salesforce_requests_by_kind"].values())
