"""bench.transform on a small run: the JSON it promises, and pandas, DuckDB and Polars agreeing on every value."""

import json

import pandas as pd

from bench import transform


def test_small_bench_prints_the_promised_json_and_engines_agree(capsys):
    assert transform.main(["--events", "4000", "--campaigns", "3", "--seed", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("events", "members", "pandas_seconds", "duckdb_seconds", "polars_seconds", "ratio", "peak_rss_mb"):
        assert key in result
    assert result["events"] == 4000 and result["identical"] is True
    assert result["members"] > result["recipients"]  # outsiders are kept


def test_synthetic_data_has_the_hard_cases():
    recipients, events, _ = transform.synthetic_frames(20_000, campaigns=2, seed=3)
    identity = ["campaign_id", "email_id", "action", "timestamp", "url"]
    assert events.duplicated(identity).any()  # re-fetched events
    assert (recipients["send_status"] != "sent").any()  # sent-to bounces
    assert not recipients["sent_at_is_exact"].all()  # an automation campaign
    members = pd.MultiIndex.from_frame(events[["campaign_id", "email_id"]].astype(str))
    sent_to = pd.MultiIndex.from_frame(recipients[["campaign_id", "email_id"]].astype(str))
    assert not members.isin(sent_to).all()  # events from outside sent-to


def test_differences_are_reported_per_column():
    recipients, events, report = transform.synthetic_frames(2_000, campaigns=1, seed=1)
    statuses, _ = transform.run_pandas(recipients, events, report)
    changed = statuses.copy()
    changed.loc[0, "total_opens"] += 1
    assert [problem.split(":")[0] for problem in transform.differences(statuses, changed)] == ["total_opens"]


def test_both_references_match_pandas_on_every_column():
    recipients, events, report = transform.synthetic_frames(6_000, campaigns=2, seed=11)
    statuses, totals = transform.run_pandas(recipients, events, report)
    for reference in (transform.run_duckdb, transform.run_polars):
        their_statuses, their_totals = reference(recipients, events, report)
        assert list(their_statuses.columns) == list(statuses.columns)
        assert transform.differences(statuses, their_statuses) == []
        assert transform.differences(totals, their_totals) == []
        # A reference that got one value wrong is caught, naming the column.
        broken = their_statuses.copy()
        broken.loc[3, "last_clicked_url"] = "https://elsewhere.example/"
        assert [p.split(":")[0] for p in transform.differences(statuses, broken)] == ["last_clicked_url"]
