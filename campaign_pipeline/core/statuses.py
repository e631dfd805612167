"""The member status rules of design §2: which of Clicked / Opened / Bounced / Unsubscribed / Sent a member shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import pandas as pd

from campaign_pipeline.core.vocabulary import MEMBER_STATUSES, SENT

StatusRuleName = Literal["latest", "highest_rank"]
STATUS_RULE_NAMES: tuple[str, ...] = get_args(StatusRuleName)

# Index = status code. Event statuses are ordered by tie rank, so at one instant the larger code wins
# (Clicked first); Sent has the largest code but is only ever chosen when a recipient has no event.
EVENT_STATUSES: tuple[str, ...] = tuple(reversed([status for status in MEMBER_STATUSES if status != SENT]))
STATUS_BY_CODE: tuple[str, ...] = (*EVENT_STATUSES, SENT)
SENT_CODE = len(EVENT_STATUSES)

# The columns a rule reads: per member, the instant of the last event of each kind (NaT when none).
LAST_EVENT_COLUMNS: tuple[str, ...] = ("last_unsubscribe_at", "last_bounce_at", "last_open_at", "last_click_at")
RULE_INPUT_COLUMNS: tuple[str, ...] = (*LAST_EVENT_COLUMNS, "send_status", "sent_at")

_NO_EVENT = np.iinfo(np.int64).min  # NaT as int64; smaller than every real instant
_STATUS_NAMES = np.array(STATUS_BY_CODE, dtype=object)
_UTC = pd.DatetimeTZDtype("ns", "UTC")


def _last_event_ns(member_events: pd.DataFrame) -> list[np.ndarray]:
    """Per kind (in code order), int64 ns of each member's last event, a sent-to bounce folded in as a bounce."""
    missing = [column for column in RULE_INPUT_COLUMNS if column not in member_events.columns]
    if missing:
        raise KeyError(f"status rule input lacks columns {missing}; it needs {list(RULE_INPUT_COLUMNS)}")
    last_ns = [_as_utc_ns(member_events[column], column) for column in LAST_EVENT_COLUMNS]
    # A send that sent-to reports as a hard/soft bounce is a bounce at the send time, event or not.
    sent_bounced = member_events["send_status"].isin(("hard", "soft")).to_numpy(dtype=bool)
    bounce = LAST_EVENT_COLUMNS.index("last_bounce_at")
    sent_ns = _as_utc_ns(member_events["sent_at"], "sent_at")
    last_ns[bounce] = np.where(sent_bounced, np.maximum(last_ns[bounce], sent_ns), last_ns[bounce])
    return last_ns


def _as_utc_ns(values: pd.Series, column: str) -> np.ndarray:
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"status rule input column {column} must be tz-aware UTC datetimes, got {values.dtype}")
    # to_numpy gives UTC instants whatever the zone or unit, without a copy when already ns.
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def utc_datetimes(ns: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """A tz-aware UTC datetime array over int64 nanoseconds (NaT = int64 min), without copying them."""
    wall = ns.view("datetime64[ns]")
    simple_new = getattr(pd.arrays.DatetimeArray, "_simple_new", None)
    if simple_new is not None:
        # In UTC the wall time is the instant, so wrapping is exact; the public constructor re-localizes
        # and copies, which costs a noticeable share of the whole computation at millions of members.
        return simple_new(wall, dtype=_UTC)
    return pd.arrays.DatetimeArray._from_sequence(wall, dtype=_UTC)


def _rule_result(member_events: pd.DataFrame, status_codes: np.ndarray, status_ns: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        copy=False,
        data={"latest_status": _STATUS_NAMES[status_codes], "latest_status_at": utc_datetimes(status_ns)},
        index=member_events.index,
    )


def _with_sent_fallback(
    member_events: pd.DataFrame, last_ns: list[np.ndarray], status_codes: np.ndarray, status_ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Sent only when there is no event at all; a recipient who never received anything we know of
    # (no sent_at) still shows Sent, with NaT as its time.
    no_event = np.logical_and.reduce([kind == _NO_EVENT for kind in last_ns])
    sent_ns = _as_utc_ns(member_events["sent_at"], "sent_at")
    return np.where(no_event, SENT_CODE, status_codes), np.where(no_event, sent_ns, status_ns)


def latest_status_rule(member_events: pd.DataFrame) -> pd.DataFrame:
    """The status of each member's most recent event (design §2), one row per input row.

    `member_events` has one row per campaign x member with the instant of the member's last event of
    each kind (`last_unsubscribe_at`, `last_bounce_at`, `last_open_at`, `last_click_at`; NaT when none),
    `send_status` (sent-to status or NA) and `sent_at`. Rules:
    - the most recent instant wins; events at the same instant rank Clicked > Opened > Bounced > Unsubscribed;
    - a sent-to `hard`/`soft` status counts as a bounce at `sent_at`, even with no bounce event;
    - a member with no event at all is `Sent`, at `sent_at`.
    Returns `latest_status` and `latest_status_at` (the instant of the winning event).
    """
    last_ns = _last_event_ns(member_events)
    winner_ns = np.maximum.reduce(last_ns)
    # Kinds are in tie-rank order, so the first match from the top is the highest-ranked kind at the latest instant.
    codes = np.arange(len(last_ns))
    winner = np.select([kind == winner_ns for kind in reversed(last_ns)], list(reversed(codes)), default=0)
    codes, times = _with_sent_fallback(member_events, last_ns, winner, winner_ns)
    return _rule_result(member_events, codes, times)


def highest_rank_rule(member_events: pd.DataFrame) -> pd.DataFrame:
    """Alternative rule: the highest-ranked status the member ever reached (Clicked > Opened > Bounced > Unsubscribed).

    Same input and output as `latest_status_rule`; `latest_status_at` is the last event of the winning kind.
    """
    last_ns = _last_event_ns(member_events)
    has_event = [kind != _NO_EVENT for kind in reversed(last_ns)]
    winner = np.select(has_event, list(reversed(range(len(last_ns)))), default=0)
    winner_ns = np.select(has_event, list(reversed(last_ns)), default=_NO_EVENT)
    codes, times = _with_sent_fallback(member_events, last_ns, winner, winner_ns)
    return _rule_result(member_events, codes, times)


STATUS_RULES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "latest": latest_status_rule,
    "highest_rank": highest_rank_rule,
}


def status_rule(name: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The rule a profile names (SyncProfile.status_rule); an unknown name is an error, never a silent default."""
    try:
        return STATUS_RULES[name]
    except KeyError:
        raise ValueError(f"unknown status_rule {name!r}; allowed values: {', '.join(STATUS_RULE_NAMES)}") from None
