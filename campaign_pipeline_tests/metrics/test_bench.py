"""bench.transform on a small run: the JSON it promises, and pandas and DuckDB agreeing on every value."""

import json

import pandas as pd

from bench import transform


def test_small_bench_prints_the_promised_json_and_engines_agree(capsys):
    assert transform.main(["--events", "4000", "--campaigns", "3", "--seed", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("events", "members", "pandas_seconds", "duckdb_seconds", "ratio", "peak_rss_mb"):
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
