"""Benchmark of member statuses + campaign totals: the pandas core against the same computation in DuckDB and Polars.

    python -m bench.transform --events 10000000

Prints one JSON object: events, members, pandas_seconds, duckdb_seconds, polars_seconds, ratio (pandas / the
faster of DuckDB and Polars, each timed from the same pandas frames to the same pandas frames; see
bench.transform_references for how they are written), ratio_vs_duckdb, ratio_vs_polars, *_query_seconds and
ratio_vs_engines_alone (the engines on integer inputs, without coding or decoding), peak_rss_mb (the process
peak through data generation and the pandas path, i.e. what the project's computation needs;
whole_run_peak_rss_mb adds the references' phases), per-phase peaks, and whether all three produced identical
results (the run exits 1 if not). pandas runs on one core; DuckDB and Polars use every core.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from bench.transform_references import run_duckdb, run_polars
from campaign_pipeline.core.metrics import campaign_totals, member_statuses

ACTIONS = ["open", "click", "bounce", "unsubscribe"]
ACTION_SHARES = [0.62, 0.28, 0.04, 0.06]
SEND_EPOCH_S = 1_709_283_600  # 2024-03-01 09:00 UTC
ATTRIBUTION_WINDOW_S = 30 * 24 * 3600
URL_COUNT = 60


def _hex_ids(generator: np.random.Generator, count: int) -> np.ndarray:
    """`count` distinct random 32-hex-digit ids (stand-ins for md5 email hashes), built without a Python loop."""
    table = np.array([f"{byte:02x}".encode() for byte in range(256)], dtype="S2")
    raw = generator.integers(0, 256, size=(count, 16), dtype=np.uint8)
    hexed = table[raw].view("S32").ravel()
    return np.unique(hexed.astype("U32")).astype(object)


def synthetic_frames(events: int, campaigns: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Recipients, events and Mailchimp reports shaped like docs/frames.md, with categorical string columns.

    Roughly 4 events per recipient, repeat opens and clicks, ties at one second, sent-to bounces, 2% of
    events fetched twice, 0.5% of events from addresses outside sent-to, one automation campaign.
    """
    generator = np.random.default_rng(seed)
    per_campaign = max(1, events // (4 * campaigns))
    outsiders = max(1, per_campaign // 200)
    email_ids = _hex_ids(generator, per_campaign + outsiders)
    email_ids.sort()
    universe = len(email_ids)
    addresses = pd.Index(np.arange(universe).astype(str), dtype=object)
    addresses = pd.Index(("member" + addresses + "@example.com").to_numpy(dtype=object))
    campaign_names = np.array([f"c{index:03d}" for index in range(campaigns)], dtype=object)
    campaign_type = pd.CategoricalDtype(campaign_names)
    email_type = pd.CategoricalDtype(email_ids)
    recipient_emails = generator.permutation(universe)[:per_campaign]

    recipient_campaign = np.repeat(np.arange(campaigns), per_campaign)
    recipient_email = np.tile(recipient_emails, campaigns)
    send_status = generator.choice(np.array([0, 1, 2], dtype=np.int8), len(recipient_email), p=[0.98, 0.012, 0.008])
    sent_s = SEND_EPOCH_S + recipient_campaign * 86_400
    recipients = pd.DataFrame(
        {
            "campaign_id": pd.Categorical.from_codes(recipient_campaign, dtype=campaign_type),
            "email_id": pd.Categorical.from_codes(recipient_email, dtype=email_type),
            "email_address": pd.Categorical.from_codes(recipient_email, categories=addresses),
            "send_status": pd.Categorical.from_codes(send_status, categories=["sent", "hard", "soft"]),
            "sent_at": pd.to_datetime(sent_s, unit="s", utc=True).astype("datetime64[ns, UTC]"),
            "sent_at_is_exact": recipient_campaign != campaigns - 1,  # the last campaign is an automation
        }
    )

    distinct_events = int(events / 1.02)
    event_campaign = generator.integers(0, campaigns, distinct_events)
    # Engaged members produce most events: a skewed pick among recipients, plus a few outsiders.
    skewed = (generator.pareto(1.5, distinct_events) * per_campaign / 20).astype(np.int64) % per_campaign
    event_email = recipient_emails[skewed]
    outsider_rows = generator.random(distinct_events) < 0.005
    outsider_ids = np.setdiff1d(np.arange(universe), recipient_emails)
    event_email[outsider_rows] = generator.choice(outsider_ids, int(outsider_rows.sum()))
    action = generator.choice(np.arange(4, dtype=np.int8), distinct_events, p=ACTION_SHARES)
    event_s = SEND_EPOCH_S + event_campaign * 86_400 + generator.integers(0, ATTRIBUTION_WINDOW_S, distinct_events)
    url = np.where(action == 1, generator.integers(0, URL_COUNT, distinct_events), -1).astype(np.int8)
    bounce_type = np.where(action == 2, generator.integers(0, 2, distinct_events), -1).astype(np.int8)
    # Re-fetched overlap: 2% of events appear twice; then shuffle so nothing arrives in a helpful order.
    refetched = generator.choice(distinct_events, events - distinct_events, replace=False)
    order = generator.permutation(np.concatenate([np.arange(distinct_events), refetched]))
    event_campaign, event_email, action, event_s, url, bounce_type = (
        column[order] for column in (event_campaign, event_email, action, event_s, url, bounce_type)
    )
    events_frame = pd.DataFrame(
        {
            "campaign_id": pd.Categorical.from_codes(event_campaign, dtype=campaign_type),
            "email_id": pd.Categorical.from_codes(event_email, dtype=email_type),
            "email_address": pd.Categorical.from_codes(event_email, categories=addresses),
            "action": pd.Categorical.from_codes(action, categories=ACTIONS),
            "timestamp": pd.to_datetime(event_s, unit="s", utc=True).astype("datetime64[ns, UTC]"),
            "url": pd.Categorical.from_codes(url, categories=[f"https://shop.example/p/{i}" for i in range(URL_COUNT)]),
            "bounce_type": pd.Categorical.from_codes(bounce_type, categories=["hard", "soft"]),
        }
    )
    report = pd.DataFrame(
        {
            "campaign_id": campaign_names,
            "forwards_count": generator.integers(0, 100, campaigns),
            "forwards_opens": generator.integers(0, 100, campaigns),
            "abuse_reports": generator.integers(0, 5, campaigns),
        }
    )
    return recipients, events_frame, report


def run_pandas(
    recipients: pd.DataFrame, events: pd.DataFrame, report: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    statuses = member_statuses(recipients, events)
    return statuses, campaign_totals(statuses, report)


def differences(pandas_frame: pd.DataFrame, duckdb_frame: pd.DataFrame, engine: str = "duckdb") -> list[str]:
    """Columns whose values differ between pandas and an engine (timestamps as instants, floats to 1e-9)."""
    if len(pandas_frame) != len(duckdb_frame):
        return [f"{engine}: row count {len(pandas_frame)} != {len(duckdb_frame)}"]
    problems = []
    for column in pandas_frame.columns:
        left, right = pandas_frame[column].reset_index(drop=True), duckdb_frame[column].reset_index(drop=True)
        if isinstance(left.dtype, pd.DatetimeTZDtype):
            right = pd.to_datetime(right, utc=True)
            same = left.astype("datetime64[ns, UTC]").eq(right.astype("datetime64[ns, UTC]")) | (
                left.isna() & right.isna()
            )
        elif left.dtype.kind == "f":
            same = pd.Series(
                np.isclose(left.to_numpy(), right.to_numpy(dtype=float), rtol=0, atol=1e-9, equal_nan=True)
            )
        else:
            left_values = left.astype(object).where(left.notna(), None)
            right_values = right.astype(object).where(right.notna(), None)
            same = pd.Series([a == b for a, b in zip(left_values, right_values, strict=True)])
        if not same.all():
            first = int(np.flatnonzero(~same.to_numpy())[0])
            problems.append(f"{column}: row {first} pandas={left.iloc[first]!r} {engine}={right.iloc[first]!r}")
    return problems


def peak_rss_mb() -> float:
    """Peak resident memory of the whole run so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _status_kib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def reset_phase_peak() -> None:
    """Restart the kernel's high-water mark (VmHWM), so the next phase's peak is its own (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def phase_peak_mb() -> float:
    return _status_kib("VmHWM") / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (duplicates included)")
    parser.add_argument("--campaigns", type=int, default=4, help="campaigns the events spread over")
    parser.add_argument("--seed", type=int, default=20240301)
    parser.add_argument("--repeat", type=int, default=1, help="time each engine this many times; best time counts")
    args = parser.parse_args(argv)
    if args.events < 1 or args.campaigns < 1 or args.repeat < 1:
        parser.error("--events, --campaigns and --repeat must be at least 1")

    recipients, events, report = synthetic_frames(args.events, args.campaigns, args.seed)
    rss_after_data = peak_rss_mb()

    gc.collect()
    input_rss = _status_kib("VmRSS") / 1024
    engines: dict[str, Callable[..., tuple[pd.DataFrame, pd.DataFrame]]] = {
        "pandas": lambda *frames, timings: run_pandas(*frames),
        "duckdb": run_duckdb,
        "polars": run_polars,
    }
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    query_seconds: dict[str, list[float]] = {name: [] for name in engines}
    peaks: dict[str, float] = {}
    pandas_frames: tuple[pd.DataFrame, pd.DataFrame] | None = None
    problems: list[str] = []
    for name, engine in engines.items():
        reset_phase_peak()
        frames = None
        for _ in range(args.repeat):
            frames = None  # a repeat must not hold the previous result in memory
            gc.collect()
            timings: dict[str, float] = {}
            start = time.perf_counter()
            frames = engine(recipients, events, report, timings=timings)
            seconds[name].append(time.perf_counter() - start)
            query_seconds[name].append(timings.get("query", seconds[name][-1]))
        peaks[name] = phase_peak_mb()
        assert frames is not None  # --repeat >= 1
        if pandas_frames is None:
            pandas_frames = frames
        else:
            problems += differences(pandas_frames[0], frames[0], name) + differences(pandas_frames[1], frames[1], name)
        del frames  # the reference's frames go before the next engine runs
    assert pandas_frames is not None
    best = {name: min(values) for name, values in seconds.items()}
    best_query = {name: min(values) for name, values in query_seconds.items()}
    fastest_reference = min(best["duckdb"], best["polars"])
    pandas_statuses = pandas_frames[0]
    result = {
        "events": len(events),
        "members": len(pandas_statuses),
        "recipients": len(recipients),
        "campaigns": args.campaigns,
        "pandas_seconds": round(best["pandas"], 3),
        "duckdb_seconds": round(best["duckdb"], 3),
        "polars_seconds": round(best["polars"], 3),
        # pandas against the faster reference; each reference's time runs from the same pandas frames to the same
        # pandas frames (coding to integers, the engine, decoding back), as the core does.
        "ratio": round(best["pandas"] / fastest_reference, 3),
        "ratio_vs_duckdb": round(best["pandas"] / best["duckdb"], 3),
        "ratio_vs_polars": round(best["pandas"] / best["polars"], 3),
        # The engines alone, on integer inputs already built, up to their integer results: a stricter reference.
        "duckdb_query_seconds": round(best_query["duckdb"], 3),
        "polars_query_seconds": round(best_query["polars"], 3),
        "ratio_vs_engines_alone": round(best["pandas"] / min(best_query["duckdb"], best_query["polars"]), 3),
        "peak_rss_mb": round(max(rss_after_data, peaks["pandas"]), 1),
        "whole_run_peak_rss_mb": round(peak_rss_mb(), 1),
        "input_rss_mb": round(input_rss, 1),
        "pandas_phase_peak_rss_mb": round(peaks["pandas"], 1),
        "duckdb_phase_peak_rss_mb": round(peaks["duckdb"], 1),
        "polars_phase_peak_rss_mb": round(peaks["polars"], 1),
        "data_generation_peak_rss_mb": round(rss_after_data, 1),
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews every timing; the load says how much there was.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "identical": not problems,
    }
    if problems:
        result["differences"] = problems[:20]
    print(json.dumps(result))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
