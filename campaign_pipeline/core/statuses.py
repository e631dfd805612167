"""The member status rules of design §2: which of Clicked / Opened / Bounced / Unsubscribed / Sent a member shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import pandas as pd

StatusRuleName = Literal["latest", "highest_rank"]
STATUS_RULE_NAMES: tuple[str, ...] = get_args(StatusRuleName)

# Index = status code. Event statuses are ordered by tie rank, so at one instant the larger code wins
# (Clicked first); Sent has the largest code but is only ever chosen when a recipient has no event.
EVENT_STATUSES: tuple[str, ...] = ("Unsubscribed", "Bounced", "Opened", "Clicked")
STATUS_BY_CODE: tuple[str, ...] = (*EVENT_STATUSES, "Sent")
SENT_CODE = len(EVENT_STATUSES)

# The columns a rule reads: per member, the instant of the last event of each kind (NaT when none).
LAST_EVENT_COLUMNS: tuple[str, ...] = ("last_unsubscribe_at", "last_bounce_at", "last_open_at", "last_click_at")
RULE_INPUT_COLUMNS: tuple[str, ...] = (*LAST_EVENT_COLUMNS, "send_status", "sent_at")

_NO_EVENT = np.iinfo(np.int64).min  # NaT as int64; smaller than every real instant
_STATUS_NAMES = np.array(STATUS_BY_CODE, dtype=object)
_UTC = pd.DatetimeTZDtype("ns", "UTC")


def _last_event_ns(member_events: pd.DataFrame) -> np.ndarray:
    """(members x 4) int64 ns of the last event of each kind, with a sent-to bounce folded in as a bounce."""
    missing = [column for column in RULE_INPUT_COLUMNS if column not in member_events.columns]
    if missing:
        raise KeyError(f"status rule input lacks columns {missing}; it needs {list(RULE_INPUT_COLUMNS)}")
    last_ns = np.column_stack([_as_utc_ns(member_events[column], column) for column in LAST_EVENT_COLUMNS]).reshape(
        len(member_events), len(LAST_EVENT_COLUMNS)
    )
    # A send that sent-to reports as a hard/soft bounce is a bounce at the send time, event or not.
    sent_bounced = member_events["send_status"].isin(("hard", "soft")).to_numpy()
    sent_ns = _as_utc_ns(member_events["sent_at"], "sent_at")
    bounce = LAST_EVENT_COLUMNS.index("last_bounce_at")
    last_ns[:, bounce] = np.where(sent_bounced, np.maximum(last_ns[:, bounce], sent_ns), last_ns[:, bounce])
    return last_ns


def _as_utc_ns(values: pd.Series, column: str) -> np.ndarray:
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"status rule input column {column} must be tz-aware UTC datetimes, got {values.dtype}")
    # to_numpy gives UTC instants whatever the zone or unit, without a copy when already ns.
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _rule_result(member_events: pd.DataFrame, status_codes: np.ndarray, status_ns: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        copy=False,
        data={
            "latest_status": _STATUS_NAMES[status_codes],
            "latest_status_at": pd.arrays.DatetimeArray._from_sequence(status_ns.view("datetime64[ns]"), dtype=_UTC),
        },
        index=member_events.index,
    )


def _with_sent_fallback(
    member_events: pd.DataFrame, last_ns: np.ndarray, status_codes: np.ndarray, status_ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Sent only when there is no event at all; a recipient who never received anything we know of
    # (no sent_at) still shows Sent, with NaT as its time.
    no_event = (last_ns == _NO_EVENT).all(axis=1)
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
    # argmax over the reversed columns returns the highest-ranked kind among those at the latest instant.
    reversed_kinds = last_ns[:, ::-1]
    winner = len(LAST_EVENT_COLUMNS) - 1 - np.argmax(reversed_kinds, axis=1)
    winner_ns = last_ns.max(axis=1)
    codes, times = _with_sent_fallback(member_events, last_ns, winner, winner_ns)
    return _rule_result(member_events, codes, times)


def highest_rank_rule(member_events: pd.DataFrame) -> pd.DataFrame:
    """Alternative rule: the highest-ranked status the member ever reached (Clicked > Opened > Bounced > Unsubscribed).

    Same input and output as `latest_status_rule`; `latest_status_at` is the last event of the winning kind.
    """
    last_ns = _last_event_ns(member_events)
    has_event = last_ns != _NO_EVENT
    # The highest column index with an event is the highest rank reached.
    winner = len(LAST_EVENT_COLUMNS) - 1 - np.argmax(has_event[:, ::-1], axis=1)
    winner_ns = last_ns[np.arange(len(last_ns)), winner]
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
