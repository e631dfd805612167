"""Member metrics and campaign totals from recipients and events, and their reconciliation with Mailchimp's report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from campaign_pipeline.core.schemas import CampaignTotals, MemberStatuses, empty_frame
from campaign_pipeline.core.statuses import LAST_EVENT_COLUMNS, utc_datetimes
from campaign_pipeline.core.statuses import status_rule as resolve_status_rule

# Action codes follow the tie rank of their statuses (see statuses.EVENT_STATUSES): a larger code wins a tie.
ACTION_CODES: dict[str, int] = {"unsubscribe": 0, "bounce": 1, "open": 2, "click": 3}
_UNSUBSCRIBE, _BOUNCE, _OPEN, _CLICK = 0, 1, 2, 3
# Bounce type codes: hard outranks soft outranks unknown (a bounce event Mailchimp gave no type) when a member has several.
_BOUNCE_TYPE_NAMES = np.array([pd.NA, "unknown", "soft", "hard"], dtype=object)
_BOUNCE_TYPE_CODES = {"unknown": 1, "soft": 2, "hard": 3}
_NAT = np.iinfo(np.int64).min
_NS_PER_MINUTE = 60 * 1_000_000_000

MEMBER_STATUS_COLUMNS: tuple[str, ...] = tuple(MemberStatuses.to_schema().columns)
CAMPAIGN_TOTAL_COLUMNS: tuple[str, ...] = tuple(CampaignTotals.to_schema().columns)

# Computed total -> Mailchimp report column it is reconciled against. Forwards and abuse reports
# are copied from the report, so comparing them would be comparing a number with itself.
RECONCILED_METRICS: dict[str, str] = {
    "emails_sent": "emails_sent",
    "unique_opens": "unique_opens",
    "total_opens": "opens_total",
    "unique_subscriber_clicks": "unique_subscriber_clicks",
    "total_clicks": "clicks_total",
    "hard_bounces": "hard_bounces",
    "soft_bounces": "soft_bounces",
    "unsubscribes": "unsubscribed",
    "open_rate": "open_rate",
    "click_rate": "click_rate",
}


def _sorted_codes(left: pd.Series, right: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of two string columns over their joint values, numbered in sorted value order.

    Sorted numbering makes every later tie-break and the output order independent of input row order.
    Categoricals sharing one category list (what the bench and bulk loads give) skip hashing strings.
    """
    if (
        isinstance(left.dtype, pd.CategoricalDtype)
        and isinstance(right.dtype, pd.CategoricalDtype)
        and left.cat.categories.equals(right.cat.categories)
    ):
        categories = left.cat.categories
        left_codes = left.cat.codes.to_numpy(dtype=np.int64)
        right_codes = right.cat.codes.to_numpy(dtype=np.int64)
        if (left_codes < 0).any() or (right_codes < 0).any():
            raise ValueError(f"column {left.name} has missing values; every row needs one")
        if not categories.is_monotonic_increasing:
            rank = np.empty(len(categories), dtype=np.int64)
            rank[np.argsort(categories.to_numpy(dtype=object))] = np.arange(len(categories))
            categories = categories.sort_values()
            left_codes, right_codes = rank[left_codes], rank[right_codes]
        return left_codes, right_codes, categories.to_numpy(dtype=object)
    joint = np.concatenate([left.to_numpy(dtype=object), right.to_numpy(dtype=object)])
    codes, uniques = pd.factorize(joint, sort=True)
    if (codes < 0).any():
        raise ValueError(f"column {left.name} has missing values; every row needs one")
    return codes[: len(left)].astype(np.int64), codes[len(left) :].astype(np.int64), np.asarray(uniques, dtype=object)


def _sorted_nullable_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 codes (-1 = NA) numbered in sorted value order, and the sorted values; categoricals skip hashing."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = values.cat.categories
        codes = values.cat.codes.to_numpy(dtype=np.int64)
        if categories.is_monotonic_increasing:
            return codes, categories.to_numpy(dtype=object)
        order = np.argsort(categories.to_numpy(dtype=object))
        rank = np.empty(len(categories) + 1, dtype=np.int64)
        rank[order] = np.arange(len(categories))
        rank[-1] = -1  # code -1 (NA) indexes the last slot
        return rank[codes], categories.to_numpy(dtype=object)[order]
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _codes_of(values: pd.Series, codes: dict[str, int]) -> np.ndarray:
    """int64 code of each value by `codes`; -1 for values not in it (NA included). Categoricals map categories only."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        category_codes = np.array(
            [codes.get(category, -1) for category in values.cat.categories] + [-1], dtype=np.int64
        )
        # Code -1 (NA) indexes the trailing -1.
        return category_codes[values.cat.codes.to_numpy(dtype=np.int64)]
    return values.map(codes).fillna(-1).to_numpy(dtype=np.int64)


def _bits(max_value: int) -> int:
    return max(int(max_value).bit_length(), 1)


def _utc_ns(values: pd.Series, column: str) -> np.ndarray:
    """int64 UTC nanoseconds of a tz-aware column (any zone, any unit); a view when already ns."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)  # an empty frame from storage may not carry its dtype
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"column {column} must be tz-aware UTC datetimes (datetime64[ns, UTC]), got {values.dtype}")
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


@dataclass
class _Events:
    """Distinct events as parallel int64 arrays, sorted by (member, action, instant, url)."""

    member: np.ndarray
    action: np.ndarray
    instant_ns: np.ndarray
    url: np.ndarray  # 0 = no URL, else 1 + index into the sorted URL list


def _distinct_sorted_events(
    member: np.ndarray,
    instant_ns: np.ndarray,
    action: np.ndarray,
    url: np.ndarray,
    occurrence: np.ndarray | None = None,
) -> _Events:
    """Drop repeated events (same identity) and sort by (member, action, instant, url); exact on every input.

    The identity (campaign, member, action, instant, url, occurrence) usually packs losslessly into one int64
    (Mailchimp timestamps are whole seconds), and sorting one int64 array is far cheaper than a
    four-key lexsort; when it does not fit, the lexsort path gives the same answer. The order puts each
    member's events of one action in one run, sorted by time, so later figures need no groupby.
    """
    if len(member) == 0:
        return _Events(member, action, instant_ns, url)
    start_ns = int(instant_ns.min())
    relative = instant_ns - start_ns
    unit = _common_unit(relative)
    if unit > 1:
        relative //= unit
    member_bits, instant_bits = _bits(int(member.max())), _bits(int(relative.max()))
    url_bits = _bits(int(url.max()))
    # Same-second repeats are rare: no bits at all when there are none, so the usual key is unchanged.
    max_occurrence = int(occurrence.max()) if occurrence is not None else 0
    occurrence_bits = _bits(max_occurrence) if max_occurrence > 0 else 0
    url_bits += occurrence_bits
    if member_bits + 2 + instant_bits + url_bits <= 63:
        # Built in place: at ten million events every temporary int64 array is 80 MB.
        packed = member.astype(np.int64, copy=True)
        packed <<= 2
        packed |= action
        packed <<= instant_bits
        packed |= relative
        del relative
        packed <<= url_bits
        packed |= url << occurrence_bits if occurrence_bits else url
        if occurrence_bits:
            assert occurrence is not None
            packed |= occurrence
        packed.sort()
        keep = np.empty(len(packed), dtype=bool)
        keep[0] = True
        np.not_equal(packed[1:], packed[:-1], out=keep[1:])
        distinct = packed[keep]
        del packed, keep
        instants = distinct >> url_bits
        instants &= (1 << instant_bits) - 1
        if unit > 1:
            instants *= unit
        instants += start_ns
        group = distinct >> (instant_bits + url_bits)
        urls = (distinct & ((1 << url_bits) - 1)) >> occurrence_bits
        return _Events(member=group >> 2, action=group & 3, instant_ns=instants, url=urls)
    del relative
    if occurrence is None:
        occurrence = np.zeros(len(member), dtype=np.int64)
    order = np.lexsort((occurrence, url, instant_ns, action, member))
    member, action, instant_ns, url = member[order], action[order], instant_ns[order], url[order]
    occurrence = occurrence[order]
    first = np.r_[
        True,
        (member[1:] != member[:-1])
        | (action[1:] != action[:-1])
        | (instant_ns[1:] != instant_ns[:-1])
        | (url[1:] != url[:-1])
        | (occurrence[1:] != occurrence[:-1]),
    ]
    return _Events(member[first], action[first], instant_ns[first], url[first])


def _common_unit(relative_ns: np.ndarray) -> int:
    """The coarsest of s / ms / us / ns dividing every offset; a sample rules out most units before a full pass."""
    sample = relative_ns[:: max(1, len(relative_ns) // 4096)]
    for unit in (1_000_000_000, 1_000_000, 1_000):
        if not (sample % unit).any() and not (relative_ns % unit).any():
            return unit
    return 1


def _runs(sorted_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (inclusive) positions of each run of equal members in a sorted array."""
    starts = np.flatnonzero(np.r_[True, sorted_members[1:] != sorted_members[:-1]])
    ends = np.r_[starts[1:] - 1, len(sorted_members) - 1]
    return starts, ends


_as_utc_datetimes = utc_datetimes


@dataclass
class _PerAction:
    """Per action code (rows) and member (columns): distinct event count, first and last instant; click extras."""

    counts: np.ndarray
    first_ns: np.ndarray
    last_ns: np.ndarray
    last_url: np.ndarray  # url code of the latest click (0 = none)
    distinct_urls: np.ndarray


def _per_action_metrics(distinct: _Events, member_count: int, url_count: int) -> _PerAction:
    """One pass over the runs of equal (member, action) in the sorted events gives every figure, no groupby."""
    counts = np.zeros((4, member_count), dtype=np.int64)
    first_ns = np.full((4, member_count), _NAT, dtype=np.int64)
    last_ns = np.full((4, member_count), _NAT, dtype=np.int64)
    last_url = np.zeros(member_count, dtype=np.int64)
    distinct_urls = np.zeros(member_count, dtype=np.int64)
    if len(distinct.member) == 0:
        return _PerAction(counts, first_ns, last_ns, last_url, distinct_urls)
    group = distinct.member * 4 + distinct.action
    starts, ends = _runs(group)
    run_member, run_action = distinct.member[starts], distinct.action[starts]
    # (action, member) flattened: row-major index into the (4, members) arrays.
    cell = run_action * member_count + run_member
    counts.reshape(-1)[cell] = ends - starts + 1
    first_ns.reshape(-1)[cell] = distinct.instant_ns[starts]
    last_ns.reshape(-1)[cell] = distinct.instant_ns[ends]
    click_runs = run_action == _CLICK
    # A click run is sorted by (instant, url): its last row is the latest click, a tie going to the larger URL.
    last_url[run_member[click_runs]] = distinct.url[ends[click_runs]]
    is_click = distinct.action == _CLICK
    # Sort + neighbour compare: numpy's hash-based unique is several times slower at this size.
    if is_click.any():
        member_url = np.sort(distinct.member[is_click] * (url_count + 1) + distinct.url[is_click])
        member_url = member_url[np.r_[True, member_url[1:] != member_url[:-1]]]
        distinct_urls += np.bincount(member_url // (url_count + 1), minlength=member_count)
    return _PerAction(counts, first_ns, last_ns, last_url, distinct_urls)


def _member_index(
    recipients: pd.DataFrame, events: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Member code of each recipient and event row, with the campaign ids, email ids and key of each member.

    Member = (campaign, email), numbered in (campaign_id, email_id) order. The dense key space is used when
    small (one campaign per partition, or a few in bulk); otherwise the keys that occur are sort-compressed.
    """
    campaign_r, campaign_e, campaign_names = _sorted_codes(recipients["campaign_id"], events["campaign_id"])
    email_r, email_e, email_ids = _sorted_codes(recipients["email_id"], events["email_id"])
    key_r = campaign_r * len(email_ids) + email_r
    key_e = campaign_e * len(email_ids)
    del campaign_e
    key_e += email_e
    del email_e
    key_space = len(campaign_names) * len(email_ids)
    if key_space <= 4 * (len(key_r) + len(key_e)) + 1024:
        present = np.zeros(key_space, dtype=bool)
        present[key_r] = True
        present[key_e] = True
        member_keys = np.flatnonzero(present)
        member_of_key = np.cumsum(present) - 1
        member_r, member_e = member_of_key[key_r], member_of_key[key_e]
    else:
        member_keys, inverse = np.unique(np.concatenate([key_r, key_e]), return_inverse=True)
        member_r, member_e = inverse[: len(key_r)], inverse[len(key_r) :]
    if len(member_r) and np.bincount(member_r, minlength=len(member_keys)).max() > 1:
        duplicated = pd.Series(member_keys[member_r]).duplicated()
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise ValueError(
            f"recipients list campaign {recipients['campaign_id'].iloc[first]} member "
            f"{recipients['email_id'].iloc[first]} more than once; sent-to has one row per member"
        )
    return member_r, member_e, campaign_names, email_ids, member_keys


def member_statuses(recipients: pd.DataFrame, events: pd.DataFrame, status_rule: str = "latest") -> pd.DataFrame:
    """One row per campaign x member: latest status (by `status_rule`, see core.statuses) and the member's response metrics.

    `recipients` is a CampaignRecipients frame, `events` a RawEmailEvents frame (docs/frames.md). The same
    event given twice counts once. Members are matched on `email_id`, so case differences in the address do
    not split a member. Members with events but not in sent-to are kept with `is_recipient` False. Rows come
    out sorted by campaign_id, email_id, whatever order the inputs had.
    """
    rule = resolve_status_rule(status_rule)
    if len(recipients) == 0 and len(events) == 0:
        return empty_frame(MemberStatuses)

    member_r, member_e, campaign_names, email_ids, member_keys = _member_index(recipients, events)
    member_count = len(member_keys)

    action_e = _codes_of(events["action"], ACTION_CODES)
    if (action_e < 0).any():
        bad = events.loc[action_e < 0, ["event_id", "action"]].iloc[0]
        raise ValueError(f"event {bad['event_id']} has action {bad['action']!r}; allowed: {sorted(ACTION_CODES)}")
    instant_e = _utc_ns(events["timestamp"], "timestamp")

    # Bounce type: hard beats soft, from bounce events (before de-duplication is fine for a maximum)
    # and from sent-to.
    bounce_type = np.zeros(member_count, dtype=np.int64)
    bounce_rows = np.flatnonzero(action_e == _BOUNCE)
    event_bounce = _codes_of(events["bounce_type"].iloc[bounce_rows], _BOUNCE_TYPE_CODES)
    np.maximum.at(bounce_type, member_e[bounce_rows], event_bounce)
    np.maximum.at(bounce_type, member_r, _codes_of(recipients["send_status"], _BOUNCE_TYPE_CODES))
    bounce_type = np.maximum(bounce_type, 0)

    is_recipient = np.zeros(member_count, dtype=bool)
    is_recipient[member_r] = True
    email_address = np.full(member_count, pd.NA, dtype=object)
    email_address[member_r] = recipients["email_address"].to_numpy(dtype=object)
    if not is_recipient.all():
        # Non-recipients take the address of their latest event (largest address on a tie, so
        # the pick does not depend on row order).
        outsider_rows = np.flatnonzero(~is_recipient[member_e])
        outsiders = pd.DataFrame(
            {
                "member": member_e[outsider_rows],
                "instant": instant_e[outsider_rows],
                "email_address": events["email_address"].iloc[outsider_rows].to_numpy(dtype=object),
            }
        ).sort_values(["member", "instant", "email_address"])
        latest_address = outsiders.drop_duplicates("member", keep="last")
        email_address[latest_address["member"].to_numpy()] = latest_address["email_address"].to_numpy()

    url_e, url_names = _sorted_nullable_codes(events["url"])
    url_e += 1  # 0 = no URL
    # Frames without the column (built before same-second repeats were counted) have none.
    occurrence_e = events["occurrence"].to_numpy(dtype=np.int64) if "occurrence" in events else None
    distinct = _distinct_sorted_events(member_e, instant_e, action_e, url_e, occurrence_e)
    del member_e, instant_e, action_e, url_e, occurrence_e

    per_action = _per_action_metrics(distinct, member_count, len(url_names))
    counts, first_ns, last_ns = per_action.counts, per_action.first_ns, per_action.last_ns
    last_url, distinct_urls = per_action.last_url, per_action.distinct_urls
    del distinct

    sent_ns = np.full(member_count, _NAT, dtype=np.int64)
    sent_ns[member_r] = _utc_ns(recipients["sent_at"], "sent_at")
    sent_exact = np.zeros(member_count, dtype=bool)
    sent_exact[member_r] = recipients["sent_at_is_exact"].to_numpy(dtype=bool)
    sent_ns = approximate_send_times(sent_ns, sent_exact, first_ns)
    send_status_names = np.full(member_count, pd.NA, dtype=object)
    send_status_names[member_r] = recipients["send_status"].to_numpy(dtype=object)

    # copy=False keeps each column its own block: consolidating millions of object values costs seconds.
    rule_input = pd.DataFrame(
        {
            **{column: _as_utc_datetimes(last_ns[code]) for code, column in enumerate(LAST_EVENT_COLUMNS)},
            "send_status": send_status_names,
            "sent_at": _as_utc_datetimes(sent_ns),
        },
        copy=False,
    )
    statuses = rule(rule_input)

    campaign_index = member_keys // len(email_ids)
    email_index = member_keys % len(email_ids)
    first_open = first_ns[_OPEN]
    opened = counts[_OPEN] > 0
    clicked = counts[_CLICK] > 0
    # Minutes from an approximate send time would be a made-up figure: left empty rather than shown.
    time_to_open = np.where(opened & (sent_ns != _NAT) & sent_exact, (first_open - sent_ns) / _NS_PER_MINUTE, np.nan)
    url_lookup = np.concatenate([np.array([pd.NA], dtype=object), np.asarray(url_names, dtype=object)])
    frame = pd.DataFrame(
        {
            "campaign_id": campaign_names[campaign_index],
            "email_id": email_ids[email_index],
            "email_address": email_address,
            "is_recipient": is_recipient,
            "send_status": send_status_names,
            "sent_at": _as_utc_datetimes(sent_ns),
            "sent_at_is_exact": sent_exact,
            "latest_status": statuses["latest_status"].to_numpy(),
            "latest_status_at": statuses["latest_status_at"].array,
            "total_opens": counts[_OPEN],
            "unique_opens": opened.astype(np.int64),
            "total_clicks": counts[_CLICK],
            "unique_clicks": clicked.astype(np.int64),
            "first_open_at": _as_utc_datetimes(first_open),
            "last_open_at": _as_utc_datetimes(last_ns[_OPEN]),
            "first_click_at": _as_utc_datetimes(first_ns[_CLICK]),
            "last_click_at": _as_utc_datetimes(last_ns[_CLICK]),
            "time_to_open_minutes": time_to_open,
            "last_clicked_url": url_lookup[last_url],
            "distinct_urls_clicked": distinct_urls,
            "bounce_type": _BOUNCE_TYPE_NAMES[bounce_type],
            "unsubscribed_at": _as_utc_datetimes(last_ns[_UNSUBSCRIBE]),
            "was_opened": opened,
            "was_clicked": clicked,
            "was_bounced": bounce_type > 0,
            "was_unsubscribed": counts[_UNSUBSCRIBE] > 0,
        },
        copy=False,
    )
    return frame


def approximate_send_times(sent_ns: np.ndarray, sent_exact: np.ndarray, first_ns: np.ndarray) -> np.ndarray:
    """Each member's send time, where it is approximate never after the member's first event of any kind.

    Automation emails give no per-recipient send time, and the email's own send_time can be later than a
    recipient's activity (it moves when the email is restarted). A member cannot act on an email before
    receiving it, so the earlier of the two is the best bound. Exact send times are left alone.
    """
    first_event = np.where(first_ns == _NAT, np.iinfo(np.int64).max, first_ns).min(axis=0)
    too_late = ~sent_exact & (sent_ns != _NAT) & (first_event < sent_ns)
    return np.where(too_late, first_event, sent_ns)


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0 for an empty denominator; capped at 1 because a bounced recipient can still open or click,
    # which would otherwise push a rate on delivered past 100%.
    ratio = numerator / np.where(denominator > 0, denominator, 1)
    return np.where(denominator > 0, np.minimum(ratio, 1.0), 0.0).astype(np.float64)


def campaign_totals(member_statuses: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """One row per campaign: totals over recipients, rates on delivered, forwards and abuse reports from `report`.

    `member_statuses` is a MemberStatuses frame, `report` a MailchimpCampaignReport frame. Campaigns in either
    appear, sorted by id; members outside sent-to are only counted in `non_recipient_members`.
    """
    campaign_ids = np.asarray(
        sorted(set(member_statuses["campaign_id"].unique()).union(report["campaign_id"])), dtype=object
    )
    if len(campaign_ids) == 0:
        return empty_frame(CampaignTotals)
    campaign = pd.Index(campaign_ids).get_indexer(member_statuses["campaign_id"])
    recipient = member_statuses["is_recipient"].to_numpy(dtype=bool)
    bounce_type = member_statuses["bounce_type"]

    def recipients_where(flags: np.ndarray) -> np.ndarray:
        return np.bincount(campaign[recipient & flags], minlength=len(campaign_ids)).astype(np.int64)

    def recipient_sum(values: pd.Series) -> np.ndarray:
        return np.bincount(
            campaign[recipient], weights=values.to_numpy(dtype=np.float64)[recipient], minlength=len(campaign_ids)
        ).astype(np.int64)

    emails_sent = recipients_where(np.ones(len(recipient), dtype=bool))
    hard_bounces = recipients_where((bounce_type == "hard").to_numpy(dtype=bool))
    soft_bounces = recipients_where((bounce_type == "soft").to_numpy(dtype=bool))
    unique_opens = recipients_where(member_statuses["was_opened"].to_numpy(dtype=bool))
    unique_clicks = recipients_where(member_statuses["was_clicked"].to_numpy(dtype=bool))
    delivered = np.maximum(emails_sent - hard_bounces - soft_bounces, 0)
    from_report = report.set_index("campaign_id").reindex(campaign_ids)
    totals = pd.DataFrame(
        {
            "campaign_id": campaign_ids,
            "emails_sent": emails_sent,
            "delivered": delivered,
            "unique_opens": unique_opens,
            "total_opens": recipient_sum(member_statuses["total_opens"]),
            "unique_subscriber_clicks": unique_clicks,
            "total_clicks": recipient_sum(member_statuses["total_clicks"]),
            "hard_bounces": hard_bounces,
            "soft_bounces": soft_bounces,
            "unsubscribes": recipients_where(member_statuses["was_unsubscribed"].to_numpy(dtype=bool)),
            # Only Mailchimp knows these; a campaign without a report row has none recorded.
            "forwards": from_report["forwards_count"].fillna(0).to_numpy(dtype=np.int64),
            "forward_opens": from_report["forwards_opens"].fillna(0).to_numpy(dtype=np.int64),
            "abuse_reports": from_report["abuse_reports"].fillna(0).to_numpy(dtype=np.int64),
            "open_rate": _rate(unique_opens, delivered),
            "click_rate": _rate(unique_clicks, delivered),
            "click_to_open_rate": _rate(unique_clicks, unique_opens),
            "non_recipient_members": np.bincount(campaign[~recipient], minlength=len(campaign_ids)).astype(np.int64),
        }
    )
    return totals[list(CAMPAIGN_TOTAL_COLUMNS)]


def reconcile_totals(computed: pd.DataFrame, report: pd.DataFrame, tolerance: float = 0.02) -> pd.DataFrame:
    """The numbers where computed totals and Mailchimp's report differ by more than `tolerance` (relative).

    One row per campaign x metric beyond tolerance: campaign_id, metric, computed, mailchimp, difference,
    relative_difference (to the larger magnitude). Campaigns missing from either side are not compared.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    joined = computed.merge(report, on="campaign_id", suffixes=("", "_mailchimp"), how="inner")
    rows = []
    for metric, report_column in RECONCILED_METRICS.items():
        mailchimp_column = report_column if report_column != metric else f"{metric}_mailchimp"
        rows.append(
            pd.DataFrame(
                {
                    "campaign_id": joined["campaign_id"],
                    "metric": metric,
                    "computed": joined[metric].astype(np.float64),
                    "mailchimp": joined[mailchimp_column].astype(np.float64),
                }
            )
        )
    compared = pd.concat(rows, ignore_index=True)
    compared["difference"] = compared["computed"] - compared["mailchimp"]
    scale = np.maximum(compared["computed"].abs(), compared["mailchimp"].abs())
    compared["relative_difference"] = (compared["difference"].abs() / scale.where(scale > 0, 1)).astype(np.float64)
    # A tiny epsilon keeps float rounding of equal rates from reading as drift.
    return compared[compared["relative_difference"] > tolerance + 1e-12].reset_index(drop=True)
