"""Benchmark of member statuses + campaign totals: the pandas core against the same computation in DuckDB SQL.

    python -m bench.transform --events 1000000

Prints one JSON object: events, members, pandas_seconds, duckdb_seconds, ratio (pandas / DuckDB, both
ending in pandas DataFrames), duckdb_query_seconds and ratio_vs_duckdb_query (DuckDB without building the
DataFrames), peak_rss_mb (the process peak through data generation and the pandas path, i.e. what the
project's computation needs; whole_run_peak_rss_mb adds DuckDB's phase), per-phase peaks, and whether both
engines produced identical results (the run exits 1 if not).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time

import numpy as np
import pandas as pd

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


# Written the way one would for DuckDB: group on the (ENUM) columns as registered, cast to text only at
# member level, where there are ~4x fewer rows than events.
DUCKDB_MEMBERS_SQL = """
WITH ev AS (
    SELECT DISTINCT campaign_id, email_id, action, "timestamp" AS ts, url FROM events
),
per_member AS (
    SELECT
        campaign_id,
        email_id,
        count(*) FILTER (WHERE action = 'open') AS total_opens,
        count(*) FILTER (WHERE action = 'click') AS total_clicks,
        min(ts) FILTER (WHERE action = 'open') AS first_open_at,
        max(ts) FILTER (WHERE action = 'open') AS last_open_at,
        min(ts) FILTER (WHERE action = 'click') AS first_click_at,
        max(ts) FILTER (WHERE action = 'click') AS last_click_at,
        max(ts) FILTER (WHERE action = 'unsubscribe') AS last_unsubscribe_at,
        arg_max(url::VARCHAR, {'t': ts, 'u': url::VARCHAR}) FILTER (WHERE action = 'click') AS last_clicked_url,
        count(DISTINCT url) FILTER (WHERE action = 'click') AS distinct_urls_clicked,
        -- Latest event and its tie rank in one integer (DuckDB instants are whole microseconds).
        max(epoch_us(ts) * 4 + CASE action WHEN 'unsubscribe' THEN 0 WHEN 'bounce' THEN 1 WHEN 'open' THEN 2 ELSE 3 END)
            AS latest_score
    FROM ev
    GROUP BY campaign_id, email_id
),
event_bounce AS (
    SELECT campaign_id, email_id, max(CASE bounce_type WHEN 'hard' THEN 2 WHEN 'soft' THEN 1 END) AS bounce_code
    FROM events WHERE action = 'bounce'
    GROUP BY campaign_id, email_id
),
members_text AS (
    SELECT m.*, b.bounce_code AS event_bounce_code,
           m.campaign_id::VARCHAR AS campaign_text, m.email_id::VARCHAR AS email_text
    FROM per_member m LEFT JOIN event_bounce b USING (campaign_id, email_id)
),
rec AS (
    SELECT campaign_id::VARCHAR AS campaign_text, email_id::VARCHAR AS email_text,
           email_address::VARCHAR AS email_address, send_status::VARCHAR AS send_status, sent_at, sent_at_is_exact
    FROM recipients
),
outsiders AS (
    SELECT campaign_id, email_id FROM members_text m
    WHERE NOT EXISTS (SELECT 1 FROM rec WHERE rec.campaign_text = m.campaign_text AND rec.email_text = m.email_text)
),
outsider_address AS (
    SELECT e.campaign_id::VARCHAR AS campaign_text, e.email_id::VARCHAR AS email_text,
           arg_max(e.email_address::VARCHAR, {'t': e."timestamp", 'a': e.email_address::VARCHAR}) AS email_address
    FROM events e SEMI JOIN outsiders o ON e.campaign_id = o.campaign_id AND e.email_id = o.email_id
    GROUP BY ALL
),
joined AS (
    SELECT
        coalesce(rec.campaign_text, m.campaign_text) AS campaign_id,
        coalesce(rec.email_text, m.email_text) AS email_id,
        coalesce(rec.email_address, o.email_address) AS email_address,
        rec.email_text IS NOT NULL AS is_recipient,
        rec.send_status, rec.sent_at, coalesce(rec.sent_at_is_exact, false) AS sent_at_is_exact,
        coalesce(m.total_opens, 0) AS total_opens, coalesce(m.total_clicks, 0) AS total_clicks,
        m.first_open_at, m.last_open_at, m.first_click_at, m.last_click_at, m.last_clicked_url,
        coalesce(m.distinct_urls_clicked, 0) AS distinct_urls_clicked, m.last_unsubscribe_at,
        make_timestamp(m.latest_score // 4)::TIMESTAMPTZ AS latest_t, m.latest_score % 4 AS latest_r,
        rec.send_status IN ('hard', 'soft') AS sent_bounced,
        greatest(m.event_bounce_code, CASE rec.send_status WHEN 'hard' THEN 2 WHEN 'soft' THEN 1 END) AS bounce_code
    FROM rec
    FULL OUTER JOIN members_text m USING (campaign_text, email_text)
    LEFT JOIN outsider_address o ON o.campaign_text = m.campaign_text AND o.email_text = m.email_text
)
SELECT
    campaign_id, email_id, email_address, is_recipient, send_status, sent_at, sent_at_is_exact,
    CASE
        WHEN sent_bounced AND (latest_t IS NULL OR sent_at > latest_t OR (sent_at = latest_t AND latest_r < 1))
            THEN 'Bounced'
        WHEN latest_t IS NULL THEN 'Sent'
        ELSE ['Unsubscribed', 'Bounced', 'Opened', 'Clicked'][latest_r + 1]
    END AS latest_status,
    CASE
        WHEN sent_bounced AND (latest_t IS NULL OR sent_at > latest_t OR (sent_at = latest_t AND latest_r < 1))
            THEN sent_at
        WHEN latest_t IS NULL THEN sent_at
        ELSE latest_t
    END AS latest_status_at,
    total_opens, (total_opens > 0)::BIGINT AS unique_opens,
    total_clicks, (total_clicks > 0)::BIGINT AS unique_clicks,
    first_open_at, last_open_at, first_click_at, last_click_at,
    (epoch_ns(first_open_at) - epoch_ns(sent_at)) / 60e9 AS time_to_open_minutes,
    last_clicked_url, distinct_urls_clicked,
    CASE bounce_code WHEN 2 THEN 'hard' WHEN 1 THEN 'soft' END AS bounce_type,
    last_unsubscribe_at AS unsubscribed_at,
    total_opens > 0 AS was_opened, total_clicks > 0 AS was_clicked,
    coalesce(bounce_code, 0) > 0 AS was_bounced, last_unsubscribe_at IS NOT NULL AS was_unsubscribed
FROM joined
ORDER BY campaign_id, email_id
"""

DUCKDB_TOTALS_SQL = """
WITH per_campaign AS (
    SELECT campaign_id,
        count(*) FILTER (WHERE is_recipient) AS emails_sent,
        count(*) FILTER (WHERE is_recipient AND was_opened) AS unique_opens,
        coalesce(sum(total_opens) FILTER (WHERE is_recipient), 0) AS total_opens,
        count(*) FILTER (WHERE is_recipient AND was_clicked) AS unique_subscriber_clicks,
        coalesce(sum(total_clicks) FILTER (WHERE is_recipient), 0) AS total_clicks,
        count(*) FILTER (WHERE is_recipient AND bounce_type = 'hard') AS hard_bounces,
        count(*) FILTER (WHERE is_recipient AND bounce_type = 'soft') AS soft_bounces,
        count(*) FILTER (WHERE is_recipient AND was_unsubscribed) AS unsubscribes,
        count(*) FILTER (WHERE NOT is_recipient) AS non_recipient_members
    FROM members GROUP BY campaign_id
),
counted AS (
    SELECT p.*, greatest(emails_sent - hard_bounces - soft_bounces, 0) AS delivered,
           coalesce(r.forwards_count, 0) AS forwards, coalesce(r.forwards_opens, 0) AS forward_opens,
           coalesce(r.abuse_reports, 0) AS abuse_reports
    FROM per_campaign p LEFT JOIN report r USING (campaign_id)
)
SELECT campaign_id, emails_sent, delivered, unique_opens, total_opens, unique_subscriber_clicks, total_clicks,
    hard_bounces, soft_bounces, unsubscribes, forwards, forward_opens, abuse_reports,
    CASE WHEN delivered > 0 THEN least(unique_opens / delivered, 1.0) ELSE 0.0 END AS open_rate,
    CASE WHEN delivered > 0 THEN least(unique_subscriber_clicks / delivered, 1.0) ELSE 0.0 END AS click_rate,
    CASE WHEN unique_opens > 0 THEN least(unique_subscriber_clicks / unique_opens, 1.0) ELSE 0.0 END
        AS click_to_open_rate,
    non_recipient_members
FROM counted ORDER BY campaign_id
"""


def run_pandas(
    recipients: pd.DataFrame, events: pd.DataFrame, report: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    statuses = member_statuses(recipients, events)
    return statuses, campaign_totals(statuses, report)


def run_duckdb(
    recipients: pd.DataFrame, events: pd.DataFrame, report: pd.DataFrame, timings: dict[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames from DuckDB; `timings["query"]` gets the seconds spent before converting results to pandas."""
    import duckdb

    start = time.perf_counter()
    connection = duckdb.connect(config={"threads": os.cpu_count() or 1})
    connection.execute("SET TimeZone = 'UTC'")
    connection.register("recipients", recipients)
    connection.register("events", events)
    connection.register("report", report)
    connection.execute(f"CREATE TEMP TABLE members AS {DUCKDB_MEMBERS_SQL}")
    connection.execute(f"CREATE TEMP TABLE totals AS {DUCKDB_TOTALS_SQL}")
    if timings is not None:
        timings["query"] = time.perf_counter() - start
    # The pandas path's deliverable is a DataFrame, so turning DuckDB's rows into one is part of its time.
    totals = connection.execute("SELECT * FROM totals ORDER BY campaign_id").df()
    statuses = connection.execute("SELECT * FROM members ORDER BY campaign_id, email_id").df()
    connection.close()
    return statuses, totals


def differences(pandas_frame: pd.DataFrame, duckdb_frame: pd.DataFrame) -> list[str]:
    """Columns whose values differ between the engines (timestamps as instants, floats to 1e-9)."""
    if len(pandas_frame) != len(duckdb_frame):
        return [f"row count {len(pandas_frame)} != {len(duckdb_frame)}"]
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
            problems.append(f"{column}: row {first} pandas={left.iloc[first]!r} duckdb={right.iloc[first]!r}")
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
    pandas_seconds, duckdb_seconds, duckdb_query_seconds = [], [], []
    reset_phase_peak()
    pandas_statuses = pandas_totals = None
    for _ in range(args.repeat):
        pandas_statuses = pandas_totals = None  # a repeat must not hold the previous result in memory
        gc.collect()
        start = time.perf_counter()
        pandas_statuses, pandas_totals = run_pandas(recipients, events, report)
        pandas_seconds.append(time.perf_counter() - start)
    pandas_peak = phase_peak_mb()
    reset_phase_peak()
    duckdb_statuses = duckdb_totals = None
    for _ in range(args.repeat):
        duckdb_statuses = duckdb_totals = None
        gc.collect()
        start = time.perf_counter()
        timings: dict[str, float] = {}
        duckdb_statuses, duckdb_totals = run_duckdb(recipients, events, report, timings)
        duckdb_seconds.append(time.perf_counter() - start)
        duckdb_query_seconds.append(timings["query"])
    duckdb_peak = phase_peak_mb()

    assert pandas_statuses is not None and pandas_totals is not None  # --repeat >= 1
    assert duckdb_statuses is not None and duckdb_totals is not None
    problems = differences(pandas_statuses, duckdb_statuses) + differences(pandas_totals, duckdb_totals)
    result = {
        "events": len(events),
        "members": len(pandas_statuses),
        "recipients": len(recipients),
        "campaigns": args.campaigns,
        "pandas_seconds": round(min(pandas_seconds), 3),
        "duckdb_seconds": round(min(duckdb_seconds), 3),
        "ratio": round(min(pandas_seconds) / min(duckdb_seconds), 3),
        # DuckDB up to results in its own tables, before building pandas objects: a stricter reference.
        "duckdb_query_seconds": round(min(duckdb_query_seconds), 3),
        "ratio_vs_duckdb_query": round(min(pandas_seconds) / min(duckdb_query_seconds), 3),
        "peak_rss_mb": round(max(rss_after_data, pandas_peak), 1),
        "whole_run_peak_rss_mb": round(peak_rss_mb(), 1),
        "input_rss_mb": round(input_rss, 1),
        "pandas_phase_peak_rss_mb": round(pandas_peak, 1),
        "duckdb_phase_peak_rss_mb": round(duckdb_peak, 1),
        "data_generation_peak_rss_mb": round(rss_after_data, 1),
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews both timings; the load says how much there was.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "identical": not problems,
    }
    if problems:
        result["differences"] = problems[:20]
    print(json.dumps(result))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
