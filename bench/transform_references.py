"""The references bench.transform times pandas against: member statuses + campaign totals in DuckDB SQL and in Polars.

Both work the way one would write them for speed, not as a translation of the pandas code: every string column is
first turned into integer codes numbered in sorted value order (so integer order is text order and every tie-break
is a plain max), instants into integers in their coarsest common unit, and an event's identity (member, action,
instant, url) into one BIGINT, so de-duplication is over one integer column instead of DISTINCT over wide rows.
The engines compute on those integers only; ``decode_members`` / ``decode_totals`` turn their integer answers back
into the same pandas frames the core returns (what the core's callers get), and that decoding counts in their time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from campaign_pipeline.core.metrics import ACTION_CODES, CAMPAIGN_TOTAL_COLUMNS, MEMBER_STATUS_COLUMNS
from campaign_pipeline.core.statuses import utc_datetimes

# Status codes 0..3 follow the action codes (their tie rank); 4 is Sent.
STATUS_NAMES = np.array(["Unsubscribed", "Bounced", "Opened", "Clicked", "Sent"], dtype=object)
BOUNCE_NAMES = np.array([pd.NA, "soft", "hard"], dtype=object)
BOUNCE_CODES = {"soft": 1, "hard": 2}
NO_TIME = -1  # instants are offsets from the earliest one, so never negative
_NAT = np.iinfo(np.int64).min


@dataclass
class CodedInputs:
    """Recipients and events as integer columns, and what turns the codes back into values."""

    events: dict[str, np.ndarray]  # m (member), a (action), t (instant), u (url, 0 = none), b (bounce), addr
    recipients: dict[str, np.ndarray]  # m, addr, send (send_status code), sb (its bounce code), t, exact
    report: dict[str, np.ndarray]  # c (campaign), forwards_count, forwards_opens, abuse_reports
    email_count: int
    campaigns: np.ndarray
    email_ids: np.ndarray
    addresses: np.ndarray
    urls: np.ndarray
    send_statuses: np.ndarray
    origin_ns: int
    unit_ns: int
    action_bits: int = 2

    def bits(self, column: str) -> int:
        values = self.events[column]
        return max(int(values.max()).bit_length(), 1) if len(values) else 1


def _category_rank(categories: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each category in sorted order (with -1 appended for code -1, NA) and the sorted categories."""
    values = categories.to_numpy(dtype=object)
    rank = np.empty(len(values) + 1, dtype=np.int64)
    rank[-1] = -1  # code -1 (NA) indexes the last slot
    if categories.is_monotonic_increasing:
        rank[:-1] = np.arange(len(values))
        return rank, values
    order = np.argsort(values)
    rank[order] = np.arange(len(values))
    return rank, values[order]


def _ranked(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 codes numbered in sorted value order (-1 = NA) and the sorted values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        rank, sorted_values = _category_rank(values.cat.categories)
        return rank[values.cat.codes.to_numpy(dtype=np.int64)], sorted_values
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _joint_ranked(left: pd.Series, right: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of two columns over their joint values, numbered in sorted value order."""
    if (
        isinstance(left.dtype, pd.CategoricalDtype)
        and isinstance(right.dtype, pd.CategoricalDtype)
        and left.cat.categories.equals(right.cat.categories)
    ):
        rank, values = _category_rank(left.cat.categories)
        return (
            rank[left.cat.codes.to_numpy(dtype=np.int64)],
            rank[right.cat.codes.to_numpy(dtype=np.int64)],
            values,
        )
    codes, values = _ranked(pd.Series(np.concatenate([left.to_numpy(dtype=object), right.to_numpy(dtype=object)])))
    return codes[: len(left)], codes[len(left) :], values


def _mapped(values: pd.Series, codes: dict[str, int], default: int) -> np.ndarray:
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = np.array([codes.get(name, default) for name in values.cat.categories] + [default], dtype=np.int64)
        return lookup[values.cat.codes.to_numpy(dtype=np.int64)]
    return values.map(codes).fillna(default).to_numpy(dtype=np.int64)


def _ns(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def coded_inputs(recipients: pd.DataFrame, events: pd.DataFrame, report: pd.DataFrame) -> CodedInputs:
    campaign_r, campaign_e, campaigns = _joint_ranked(recipients["campaign_id"], events["campaign_id"])
    email_r, email_e, email_ids = _joint_ranked(recipients["email_id"], events["email_id"])
    address_r, address_e, addresses = _joint_ranked(recipients["email_address"], events["email_address"])
    email_count = len(email_ids)
    url, urls = _ranked(events["url"])
    send, send_statuses = _ranked(recipients["send_status"])
    event_ns, sent_ns = _ns(events["timestamp"]), _ns(recipients["sent_at"])
    origin = int(min(event_ns.min(initial=np.iinfo(np.int64).max), sent_ns.min(initial=np.iinfo(np.int64).max)))
    unit = next(
        (
            unit
            for unit in (1_000_000_000, 1_000_000, 1_000)
            if not ((event_ns - origin) % unit).any() and not ((sent_ns - origin) % unit).any()
        ),
        1,
    )
    campaign_code = pd.Index(campaigns).get_indexer(report["campaign_id"])
    return CodedInputs(
        events={
            "m": campaign_e * email_count + email_e,
            "a": _mapped(events["action"], ACTION_CODES, -1),
            "t": (event_ns - origin) // unit,
            "u": url + 1,
            "b": _mapped(events["bounce_type"], BOUNCE_CODES, 0),
            "addr": address_e,
        },
        recipients={
            "m": campaign_r * email_count + email_r,
            "addr": address_r,
            "send": send,
            "sb": _mapped(recipients["send_status"], BOUNCE_CODES, 0),
            "t": (sent_ns - origin) // unit,
            "exact": recipients["sent_at_is_exact"].to_numpy(dtype=bool),
        },
        report={
            "c": campaign_code.astype(np.int64),
            **{
                name: report[name].to_numpy(dtype=np.int64)
                for name in ("forwards_count", "forwards_opens", "abuse_reports")
            },
        },
        email_count=email_count,
        campaigns=campaigns,
        email_ids=email_ids,
        addresses=addresses,
        urls=urls,
        send_statuses=send_statuses,
        origin_ns=origin,
        unit_ns=unit,
    )


@dataclass(frozen=True)
class Layout:
    """How an event identity packs into one int64: member | action | instant | url, lowest bits last."""

    url_bits: int
    time_bits: int
    address_span: int  # addresses, for the (instant, address) order of outsiders' latest address

    @classmethod
    def of(cls, inputs: CodedInputs) -> Layout:
        layout = cls(inputs.bits("u"), inputs.bits("t"), max(len(inputs.addresses), 1))
        needed = inputs.bits("m") + inputs.action_bits + layout.time_bits + layout.url_bits
        if needed > 63 or (int(inputs.events["t"].max(initial=0)) + 1) * layout.address_span >= 2**63:
            raise ValueError(f"event identities need {needed} bits, more than one BIGINT holds")
        return layout

    @property
    def url_span(self) -> int:
        return 2**self.url_bits

    @property
    def time_span(self) -> int:
        return 2**self.time_bits


# -- DuckDB ------------------------------------------------------------------------------------------------------
DUCKDB_MEMBERS_SQL = """
WITH distinct_events AS (
    SELECT DISTINCT ((m * 4 + a) * {time_span} + t) * {url_span} + u AS k FROM events
),
ev AS (
    SELECT k // ({url_span} * {time_span} * 4) AS m, (k // ({url_span} * {time_span})) % 4 AS a,
           (k // {url_span}) % {time_span} AS t, k % {url_span} AS u
    FROM distinct_events
),
per_member AS (
    SELECT m,
        count(*) FILTER (WHERE a = 2) AS total_opens,
        count(*) FILTER (WHERE a = 3) AS total_clicks,
        min(t) FILTER (WHERE a = 2) AS first_open, max(t) FILTER (WHERE a = 2) AS last_open,
        min(t) FILTER (WHERE a = 3) AS first_click, max(t) FILTER (WHERE a = 3) AS last_click,
        max(t) FILTER (WHERE a = 0) AS last_unsubscribe,
        min(t) AS first_any,
        -- The latest click's URL, the larger URL on a tie (codes are in text order).
        max(t * {url_span} + u) FILTER (WHERE a = 3) % {url_span} AS last_url,
        count(DISTINCT u) FILTER (WHERE a = 3) AS distinct_urls,
        -- The latest event and its tie rank in one integer.
        max(t * 4 + a) AS latest_score
    FROM ev GROUP BY m
),
event_bounce AS (SELECT m, max(b) AS bounce_code FROM events WHERE a = 1 GROUP BY m),
outsider_address AS (
    SELECT e.m, max(e.t * {address_span} + e.addr) % {address_span} AS addr
    FROM events e ANTI JOIN recipients r ON e.m = r.m
    GROUP BY e.m
),
joined AS (
    SELECT coalesce(r.m, p.m) AS m, r.m IS NOT NULL AS is_recipient, coalesce(r.addr, o.addr, -1) AS addr,
        coalesce(r.send, -1) AS send, coalesce(r.sb, 0) AS sb,
        -- An approximate send time is never after the member's first event (core.metrics.approximate_send_times).
        CASE WHEN r.t IS NULL OR coalesce(r.exact, false) OR p.first_any IS NULL OR p.first_any >= r.t THEN r.t
             ELSE p.first_any END AS sent_t,
        coalesce(r.exact, false) AS exact,
        coalesce(p.total_opens, 0) AS total_opens, coalesce(p.total_clicks, 0) AS total_clicks,
        p.first_open, p.last_open, p.first_click, p.last_click, p.last_unsubscribe,
        coalesce(p.last_url, 0) AS last_url, coalesce(p.distinct_urls, 0) AS distinct_urls,
        p.latest_score // 4 AS latest_t, p.latest_score % 4 AS latest_r,
        greatest(coalesce(b.bounce_code, 0), coalesce(r.sb, 0)) AS bounce_code
    FROM recipients r
    FULL OUTER JOIN per_member p ON r.m = p.m
    LEFT JOIN event_bounce b ON b.m = coalesce(r.m, p.m)
    LEFT JOIN outsider_address o ON o.m = p.m
),
ruled AS (
    SELECT *, sb > 0 AND (latest_t IS NULL OR sent_t > latest_t OR (sent_t = latest_t AND latest_r < 1))
        AS sent_bounce_wins
    FROM joined
)
SELECT m, is_recipient, addr, send, coalesce(sent_t, -1) AS sent_t, exact,
    CASE WHEN sent_bounce_wins THEN 1 WHEN latest_t IS NULL THEN 4 ELSE latest_r END AS status,
    coalesce(CASE WHEN sent_bounce_wins OR latest_t IS NULL THEN sent_t ELSE latest_t END, -1) AS status_t,
    total_opens, total_clicks,
    coalesce(first_open, -1) AS first_open, coalesce(last_open, -1) AS last_open,
    coalesce(first_click, -1) AS first_click, coalesce(last_click, -1) AS last_click,
    CASE WHEN exact THEN coalesce((first_open - sent_t) * {unit_ns} / 60e9, 'NaN'::DOUBLE) ELSE 'NaN'::DOUBLE END
        AS time_to_open,
    last_url, distinct_urls, bounce_code, coalesce(last_unsubscribe, -1) AS last_unsubscribe
FROM ruled
ORDER BY m
"""

DUCKDB_TOTALS_SQL = """
WITH per_campaign AS (
    SELECT m // {email_count} AS c,
        count(*) FILTER (WHERE is_recipient) AS emails_sent,
        count(*) FILTER (WHERE is_recipient AND total_opens > 0) AS unique_opens,
        coalesce(sum(total_opens) FILTER (WHERE is_recipient), 0) AS total_opens,
        count(*) FILTER (WHERE is_recipient AND total_clicks > 0) AS unique_subscriber_clicks,
        coalesce(sum(total_clicks) FILTER (WHERE is_recipient), 0) AS total_clicks,
        count(*) FILTER (WHERE is_recipient AND bounce_code = 2) AS hard_bounces,
        count(*) FILTER (WHERE is_recipient AND bounce_code = 1) AS soft_bounces,
        count(*) FILTER (WHERE is_recipient AND last_unsubscribe >= 0) AS unsubscribes,
        count(*) FILTER (WHERE NOT is_recipient) AS non_recipient_members
    FROM members GROUP BY c
),
counted AS (
    SELECT p.*, greatest(emails_sent - hard_bounces - soft_bounces, 0) AS delivered,
           coalesce(r.forwards_count, 0) AS forwards, coalesce(r.forwards_opens, 0) AS forward_opens,
           coalesce(r.abuse_reports, 0) AS abuse_reports
    FROM per_campaign p LEFT JOIN report r USING (c)
)
SELECT c, emails_sent, delivered, unique_opens, total_opens, unique_subscriber_clicks, total_clicks,
    hard_bounces, soft_bounces, unsubscribes, forwards, forward_opens, abuse_reports,
    CASE WHEN delivered > 0 THEN least(unique_opens / delivered, 1.0) ELSE 0.0 END AS open_rate,
    CASE WHEN delivered > 0 THEN least(unique_subscriber_clicks / delivered, 1.0) ELSE 0.0 END AS click_rate,
    CASE WHEN unique_opens > 0 THEN least(unique_subscriber_clicks / unique_opens, 1.0) ELSE 0.0 END
        AS click_to_open_rate,
    non_recipient_members
FROM counted ORDER BY c
"""


def run_duckdb(
    recipients: pd.DataFrame, events: pd.DataFrame, report: pd.DataFrame, timings: dict[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames through DuckDB; ``timings["query"]`` gets the seconds of the SQL alone."""
    import os

    import duckdb

    inputs = coded_inputs(recipients, events, report)
    layout = Layout.of(inputs)
    start = time.perf_counter()
    connection = duckdb.connect(config={"threads": os.cpu_count() or 1})
    # Integer numpy columns are scanned in place; nothing is copied or cast on the way in.
    for name, columns in (("events", inputs.events), ("recipients", inputs.recipients), ("report", inputs.report)):
        connection.register(name, pd.DataFrame(columns, copy=False))
    sizes = dict(
        time_span=layout.time_span,
        url_span=layout.url_span,
        address_span=layout.address_span,
        unit_ns=inputs.unit_ns,
        email_count=inputs.email_count,
    )
    connection.execute(f"CREATE TEMP TABLE members AS {DUCKDB_MEMBERS_SQL.format(**sizes)}")
    members = connection.execute("SELECT * FROM members").fetchnumpy()
    totals = connection.execute(DUCKDB_TOTALS_SQL.format(**sizes)).fetchnumpy()
    connection.close()
    if timings is not None:
        timings["query"] = time.perf_counter() - start
    return decode_members(members, inputs), decode_totals(totals, inputs)


# -- Polars ------------------------------------------------------------------------------------------------------
def run_polars(
    recipients: pd.DataFrame, events: pd.DataFrame, report: pd.DataFrame, timings: dict[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames through Polars' lazy engine; ``timings["query"]`` gets the seconds of the Polars work alone."""
    import polars as pl

    inputs = coded_inputs(recipients, events, report)
    layout = Layout.of(inputs)
    start = time.perf_counter()
    c = pl.col
    ev = pl.LazyFrame(inputs.events)
    rec = pl.LazyFrame(inputs.recipients).with_columns(pl.lit(True).alias("is_recipient"))
    time_span, url_span, span = layout.time_span, layout.url_span, layout.address_span
    key = ((c("m") * 4 + c("a")) * time_span + c("t")) * url_span + c("u")
    distinct = (
        ev.select(key.alias("k"))
        .unique()
        .select(
            (c("k") // (url_span * time_span * 4)).alias("m"),
            ((c("k") // (url_span * time_span)) % 4).alias("a"),
            ((c("k") // url_span) % time_span).alias("t"),
            (c("k") % url_span).alias("u"),
        )
    )
    opens, clicks = c("a") == 2, c("a") == 3
    per_member = distinct.group_by("m").agg(
        opens.sum().cast(pl.Int64).alias("total_opens"),
        clicks.sum().cast(pl.Int64).alias("total_clicks"),
        c("t").filter(opens).min().alias("first_open"),
        c("t").filter(opens).max().alias("last_open"),
        c("t").filter(clicks).min().alias("first_click"),
        c("t").filter(clicks).max().alias("last_click"),
        c("t").filter(c("a") == 0).max().alias("last_unsubscribe"),
        c("t").min().alias("first_any"),
        ((c("t") * url_span + c("u")).filter(clicks).max() % url_span).alias("last_url"),
        c("u").filter(clicks).n_unique().cast(pl.Int64).alias("distinct_urls"),
        (c("t") * 4 + c("a")).max().alias("latest_score"),
    )
    event_bounce = ev.filter(c("a") == 1).group_by("m").agg(c("b").max().alias("bounce_code"))
    outsider = (
        ev.join(rec.select("m"), on="m", how="anti")
        .group_by("m")
        .agg(((c("t") * span + c("addr")).max() % span).alias("outsider_addr"))
    )
    joined = (
        rec.join(per_member, on="m", how="full", coalesce=True)
        .join(event_bounce, on="m", how="left")
        .join(outsider, on="m", how="left")
        .with_columns(
            (c("latest_score") // 4).alias("latest_t"),
            (c("latest_score") % 4).alias("latest_r"),
            c("sb").fill_null(0),
            # An approximate send time is never after the member's first event (core.metrics.approximate_send_times).
            pl.when(c("exact").fill_null(True) | c("first_any").is_null() | (c("first_any") >= c("t")))
            .then(c("t"))
            .otherwise(c("first_any"))
            .alias("t"),
        )
    )
    sent_bounce_wins = (c("sb") > 0) & (
        c("latest_t").is_null()
        | (c("t") > c("latest_t"))
        | ((c("t") == c("latest_t")) & (c("latest_r") < 1)).fill_null(False)
    )
    members_lazy = joined.select(
        "m",
        c("is_recipient").fill_null(False),
        pl.coalesce(c("addr"), c("outsider_addr"), pl.lit(-1)).alias("addr"),
        c("send").fill_null(-1),
        c("t").fill_null(-1).alias("sent_t"),
        c("exact").fill_null(False),
        pl.when(sent_bounce_wins)
        .then(1)
        .when(c("latest_t").is_null())
        .then(4)
        .otherwise(c("latest_r"))
        .alias("status"),
        pl.when(sent_bounce_wins | c("latest_t").is_null())
        .then(c("t"))
        .otherwise(c("latest_t"))
        .fill_null(-1)
        .alias("status_t"),
        c("total_opens").fill_null(0),
        c("total_clicks").fill_null(0),
        *(c(name).fill_null(-1) for name in ("first_open", "last_open", "first_click", "last_click")),
        pl.when(c("exact").fill_null(False))
        .then((c("first_open") - c("t")) * inputs.unit_ns / 60e9)
        .otherwise(None)
        .fill_null(float("nan"))
        .alias("time_to_open"),
        c("last_url").fill_null(0),
        c("distinct_urls").fill_null(0),
        pl.max_horizontal(c("bounce_code").fill_null(0), c("sb")).alias("bounce_code"),
        c("last_unsubscribe").fill_null(-1),
    ).sort("m")
    members = members_lazy.collect()
    recipient = c("is_recipient")
    per_campaign = (
        members.lazy()
        .group_by((c("m") // inputs.email_count).alias("c"))
        .agg(
            recipient.sum().cast(pl.Int64).alias("emails_sent"),
            (recipient & (c("total_opens") > 0)).sum().cast(pl.Int64).alias("unique_opens"),
            c("total_opens").filter(recipient).sum().alias("total_opens"),
            (recipient & (c("total_clicks") > 0)).sum().cast(pl.Int64).alias("unique_subscriber_clicks"),
            c("total_clicks").filter(recipient).sum().alias("total_clicks"),
            (recipient & (c("bounce_code") == 2)).sum().cast(pl.Int64).alias("hard_bounces"),
            (recipient & (c("bounce_code") == 1)).sum().cast(pl.Int64).alias("soft_bounces"),
            (recipient & (c("last_unsubscribe") >= 0)).sum().cast(pl.Int64).alias("unsubscribes"),
            (~recipient).sum().cast(pl.Int64).alias("non_recipient_members"),
        )
        .join(pl.LazyFrame(inputs.report), on="c", how="left")
        .with_columns(
            pl.max_horizontal(c("emails_sent") - c("hard_bounces") - c("soft_bounces"), pl.lit(0)).alias("delivered"),
            c("forwards_count").fill_null(0).alias("forwards"),
            c("forwards_opens").fill_null(0).alias("forward_opens"),
            c("abuse_reports").fill_null(0),
        )
    )

    def rate(numerator: str, denominator: str) -> pl.Expr:
        return (
            pl.when(c(denominator) > 0)
            .then(pl.min_horizontal(c(numerator) / c(denominator), pl.lit(1.0)))
            .otherwise(0.0)
        )

    totals = (
        per_campaign.with_columns(
            rate("unique_opens", "delivered").alias("open_rate"),
            rate("unique_subscriber_clicks", "delivered").alias("click_rate"),
            rate("unique_subscriber_clicks", "unique_opens").alias("click_to_open_rate"),
        )
        .sort("c")
        .collect()
    )
    member_arrays = {name: members[name].to_numpy() for name in members.columns}
    total_arrays = {name: totals[name].to_numpy() for name in totals.columns}
    if timings is not None:
        timings["query"] = time.perf_counter() - start
    return decode_members(member_arrays, inputs), decode_totals(total_arrays, inputs)


# -- back to the core's frames -----------------------------------------------------------------------------------
def _with_na(values: np.ndarray) -> np.ndarray:
    """Values with NA appended, so that code -1 looks up NA."""
    return np.concatenate([np.asarray(values, dtype=object), np.array([pd.NA], dtype=object)])


def _instants(offsets: np.ndarray, inputs: CodedInputs) -> pd.api.extensions.ExtensionArray:
    offsets = np.asarray(offsets, dtype=np.int64)
    ns = offsets * inputs.unit_ns + inputs.origin_ns
    return utc_datetimes(np.where(offsets == NO_TIME, _NAT, ns))


def decode_members(codes: dict[str, np.ndarray], inputs: CodedInputs) -> pd.DataFrame:
    member = np.asarray(codes["m"], dtype=np.int64)
    total_opens = np.asarray(codes["total_opens"], dtype=np.int64)
    total_clicks = np.asarray(codes["total_clicks"], dtype=np.int64)
    bounce_code = np.asarray(codes["bounce_code"], dtype=np.int64)
    unsubscribed = np.asarray(codes["last_unsubscribe"], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "campaign_id": inputs.campaigns[member // inputs.email_count],
            "email_id": inputs.email_ids[member % inputs.email_count],
            "email_address": _with_na(inputs.addresses)[codes["addr"]],
            "is_recipient": np.asarray(codes["is_recipient"], dtype=bool),
            "send_status": _with_na(inputs.send_statuses)[codes["send"]],
            "sent_at": _instants(codes["sent_t"], inputs),
            "sent_at_is_exact": np.asarray(codes["exact"], dtype=bool),
            "latest_status": STATUS_NAMES[codes["status"]],
            "latest_status_at": _instants(codes["status_t"], inputs),
            "total_opens": total_opens,
            "unique_opens": (total_opens > 0).astype(np.int64),
            "total_clicks": total_clicks,
            "unique_clicks": (total_clicks > 0).astype(np.int64),
            "first_open_at": _instants(codes["first_open"], inputs),
            "last_open_at": _instants(codes["last_open"], inputs),
            "first_click_at": _instants(codes["first_click"], inputs),
            "last_click_at": _instants(codes["last_click"], inputs),
            "time_to_open_minutes": np.asarray(codes["time_to_open"], dtype=np.float64),
            "last_clicked_url": np.concatenate([np.array([pd.NA], dtype=object), inputs.urls])[codes["last_url"]],
            "distinct_urls_clicked": np.asarray(codes["distinct_urls"], dtype=np.int64),
            "bounce_type": BOUNCE_NAMES[bounce_code],
            "unsubscribed_at": _instants(unsubscribed, inputs),
            "was_opened": total_opens > 0,
            "was_clicked": total_clicks > 0,
            "was_bounced": bounce_code > 0,
            "was_unsubscribed": unsubscribed != NO_TIME,
        },
        copy=False,
    )
    return frame[list(MEMBER_STATUS_COLUMNS)]


def decode_totals(codes: dict[str, np.ndarray], inputs: CodedInputs) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            name: inputs.campaigns[np.asarray(codes["c"], dtype=np.int64)]
            if name == "campaign_id"
            else np.asarray(codes[name])
            for name in CAMPAIGN_TOTAL_COLUMNS
        }
    )
    return frame
