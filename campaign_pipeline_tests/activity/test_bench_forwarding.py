"""bench.salesforce_sync hands modes activity/notes to bench.salesforce_activity with the options it was given."""

from __future__ import annotations

import pytest

from bench import salesforce_activity, salesforce_sync


@pytest.fixture
def forwarded(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(salesforce_activity, "main", lambda argv: calls.append(list(argv)) or 0)
    return calls


def test_bulk_threshold_and_seed_reach_the_activity_bench(forwarded) -> None:
    argv = ["--mode", "notes", "--members", "50", "--bulk-threshold", "10", "--seed", "3"]
    assert salesforce_sync.main(argv) == 0
    parsed = salesforce_activity.build_parser().parse_args(forwarded[0])
    assert (parsed.mode, parsed.members, parsed.bulk_threshold, parsed.seed) == ("notes", 50, 10, 3)


def test_unset_options_keep_the_activity_bench_defaults(forwarded) -> None:
    assert salesforce_sync.main(["--mode", "activity", "--opens-per-member", "1.5"]) == 0
    parsed = salesforce_activity.build_parser().parse_args(forwarded[0])
    defaults = salesforce_activity.build_parser().parse_args([])
    assert (parsed.bulk_threshold, parsed.seed) == (defaults.bulk_threshold, defaults.seed)
    assert parsed.opens_per_member == 1.5


def test_coverage_is_refused_for_the_activity_bench(forwarded) -> None:
    with pytest.raises(SystemExit):
        salesforce_sync.main(["--mode", "activity", "--coverage", "0.5"])
    assert forwarded == []
