"""Desired Salesforce Tasks, Notes and Attachments (modes activity, campaign_and_activity, notes), built from frames.

The frames have the shape ``core.salesforce_records`` documents (meta columns, then Salesforce fields), so the sync
engine pushes them through the same ledger, diff, batching and error handling as Campaigns and members.

Stable keys: a Task is keyed by its Mailchimp event identity (``event_id``), or with ``one_task_per_url`` by
campaign + member + clicked URL; a Note and an Attachment by campaign + Salesforce person id.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import pandas as pd

from campaign_pipeline.core.ordering import sort_positions
from campaign_pipeline.core.salesforce_records import (
    META_COLUMNS,
    TRUNCATION_MARKER,
    enforce_field_limits,
)
from campaign_pipeline.core.vocabulary import STATUS_BY_ACTION

# Ledger kinds of the three desired-record frames.
TASK = "task"
NOTE = "note"
ATTACHMENT = "attachment"

# The actions that become Tasks, and the response status each one stands for.
TASK_STATUS_BY_ACTION: dict[str, str] = {action: STATUS_BY_ACTION[action] for action in ("open", "click")}
TASK_STATUS = "Completed"
TASK_SUBTYPE = "Email"
# Salesforce caps an Attachment body at 25 MB (decoded bytes); a larger email is refused, never truncated.
ATTACHMENT_MAX_BYTES = 25 * 1024 * 1024
ATTACHMENT_CONTENT_TYPE = "text/html"
# Default length of a custom URL field (Salesforce's url type holds 255 characters).
URL_FIELD_LENGTH = 255

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_MINUTE_FORMAT = "%Y-%m-%d %H:%M UTC"
_APPROXIMATE = " (approximate: automation emails give no per-recipient send time)"


def campaign_names(campaign_report: pd.DataFrame) -> pd.Series:
    """The name each campaign is shown under in Salesforce: title, else subject line, else its Mailchimp id."""
    report = campaign_report.drop_duplicates("campaign_id")
    title = report["campaign_title"].astype(object)
    subject = report["subject_line"].astype(object)
    title = title.where(title.notna() & (title != ""))
    subject = subject.where(subject.notna() & (subject != ""))
    names = title.fillna(subject).fillna("Mailchimp campaign " + report["campaign_id"])
    return pd.Series(names.to_numpy(), index=report["campaign_id"].to_numpy(), dtype=object, name="campaign_name")


def _name_per_row(campaign_ids: pd.Series, names: pd.Series) -> pd.Series:
    mapped = campaign_ids.map(names)
    return mapped.where(mapped.notna(), "Mailchimp campaign " + campaign_ids).astype(object)


def task_subject(response_status: pd.Series, campaign_name: pd.Series, *, status_is_mapped: bool) -> pd.Series:
    """The Task subject rule (issue 6), one subject per row.

    When the response status has no field of its own it leads the subject (``Clicked email campaign: Spring``);
    when the profile maps it to a Task field the status goes there and the subject is ``Email campaign: Spring``.
    Length is enforced later, with the marker, by ``enforce_field_limits``.
    """
    if status_is_mapped:
        return ("Email campaign: " + campaign_name.astype(str)).astype(object)
    return (response_status.astype(str) + " email campaign: " + campaign_name.astype(str)).astype(object)


def _finish(desired: pd.DataFrame) -> pd.DataFrame:
    """Meta columns first with their neutral values where a builder set none (the engine's frame shape)."""
    neutral = {"parent_key": pd.NA, "reject_reason": pd.NA, "truncated_fields": "", "sent_at_is_exact": True}
    for column, value in neutral.items():
        if column not in desired.columns:
            desired[column] = value
    desired["parent_key"] = desired["parent_key"].astype(object)
    desired["reject_reason"] = desired["reject_reason"].astype(object)
    desired["sent_at_is_exact"] = desired["sent_at_is_exact"].astype(bool)
    fields = [column for column in desired.columns if column not in META_COLUMNS]
    return desired[list(META_COLUMNS) + fields].reset_index(drop=True)


def _matched_events(
    raw_email_events: pd.DataFrame, member_statuses: pd.DataFrame, matches: pd.DataFrame
) -> pd.DataFrame:
    """Open and click events of members matched to a Lead/Contact, with the person and the send-time flag."""
    events = raw_email_events[raw_email_events["action"].isin(list(TASK_STATUS_BY_ACTION))]
    people = matches[["campaign_id", "email_id", "salesforce_id"]].drop_duplicates(["campaign_id", "email_id"])
    joined = events.merge(people, on=["campaign_id", "email_id"], how="inner")
    exact = member_statuses[["campaign_id", "email_id", "sent_at_is_exact"]].drop_duplicates(
        ["campaign_id", "email_id"]
    )
    joined = joined.merge(exact, on=["campaign_id", "email_id"], how="left")
    joined["sent_at_is_exact"] = joined["sent_at_is_exact"].fillna(False).astype(bool)
    joined["timestamp"] = pd.to_datetime(joined["timestamp"], utc=True)
    return joined.take(sort_positions(joined, ["campaign_id", "timestamp", "event_id"])).reset_index(drop=True)


def _url_digest(urls: pd.Series) -> pd.Series:
    # A URL can be longer than a sync key should be; its sha1 keeps the key short and stable.
    return urls.map(lambda url: hashlib.sha1(str(url).encode("utf-8")).hexdigest())


def _per_url_clicks(clicks: pd.DataFrame) -> pd.DataFrame:
    """Clicks collapsed to one row per campaign x member x URL: first click's row, click count and last click."""
    grouped = clicks.groupby(["campaign_id", "email_id", "url"], sort=False)
    first = clicks.loc[grouped["timestamp"].idxmin()].copy()
    counts = grouped["timestamp"].agg(["size", "max"]).rename(columns={"size": "click_count", "max": "last_click"})
    first = first.merge(counts, left_on=["campaign_id", "email_id", "url"], right_index=True, how="left")
    first["event_id"] = first["campaign_id"] + "|" + first["email_id"] + "|click|" + _url_digest(first["url"])
    return first


def desired_tasks(
    raw_email_events: pd.DataFrame,
    member_statuses: pd.DataFrame,
    matches: pd.DataFrame,
    campaign_report: pd.DataFrame,
    *,
    status_field: str | None = None,
    url_field: str | None = None,
    key_field: str | None = None,
    one_task_per_url: bool = False,
    link_campaign: bool = False,
    task_subtype: str | None = TASK_SUBTYPE,
    field_limit_policy: str = "truncate",
    extra_limits: dict[str, int] | None = None,
) -> pd.DataFrame:
    """One Task per open and per click event of a matched member, on the Lead/Contact (``WhoId``).

    ``Status`` Completed, ``ActivityDate`` the event's UTC date, ``TaskSubtype`` Email (None where the org has no
    such field), the event's time in ``Description``. The clicked URL goes into ``Description``, or into
    ``url_field`` when the profile maps one; the response status leads the subject unless ``status_field`` maps it
    (``task_subject``). The sync key is the event identity, also written to ``key_field`` (a Task external-ID field)
    when set. ``one_task_per_url`` makes each distinct URL a member clicked one Task (dated at its first click,
    with the click count in the description) instead of one Task per click. ``link_campaign`` (mode
    campaign_and_activity) sets ``parent_key`` to the campaign's sync key, so the engine fills ``WhatId`` with the
    Campaign's Salesforce Id.
    """
    events = _matched_events(raw_email_events, member_statuses, matches)
    if one_task_per_url:
        opens = events[events["action"] == "open"].assign(click_count=1, last_click=pd.NaT)
        clicks = events[events["action"] == "click"]
        if len(clicks):
            events = pd.concat([opens, _per_url_clicks(clicks)], ignore_index=True)
        else:
            events = opens
        events = events.take(sort_positions(events, ["campaign_id", "timestamp", "event_id"])).reset_index(drop=True)
    status = events["action"].map(TASK_STATUS_BY_ACTION).astype(object)
    name = _name_per_row(events["campaign_id"], campaign_names(campaign_report))
    is_click = (events["action"] == "click").to_numpy()
    when = events["timestamp"].dt.strftime(_TIME_FORMAT)
    url = events["url"].astype(object)

    description = status + " at " + when
    if one_task_per_url and len(events):
        repeated = is_click & (events["click_count"].to_numpy() > 1)
        last = pd.to_datetime(events["last_click"], utc=True).dt.strftime(_TIME_FORMAT)
        description = description.where(
            ~repeated,
            "Clicked "
            + events["click_count"].astype("Int64").astype(str)
            + " times, first at "
            + when
            + ", last at "
            + last,
        )
    description = (
        description
        + "\nMailchimp campaign: "
        + name
        + " ("
        + events["campaign_id"]
        + ")\nEmail address: "
        + events["email_address"].astype(str)
        + "\nMailchimp event: "
        + events["event_id"]
    )
    # The URL comes last: only it can be long enough to be cut at 32,000, and the lines above must survive (the
    # event line finds the Task again after a crash). A URL cut to fit its mapped field stays whole here.
    url_limit = (extra_limits or {}).get(url_field, URL_FIELD_LENGTH) if url_field else 0
    url_in_description = (
        is_click & ((url_field is None) | (url.fillna("").astype(str).str.len() > url_limit)).to_numpy()
    )
    description = description.where(~url_in_description, description + "\nClicked URL: " + url.fillna("").astype(str))

    desired = pd.DataFrame(
        {
            "sync_key": events["event_id"].to_numpy(),
            "campaign_id": events["campaign_id"].to_numpy(),
            "parent_key": events["campaign_id"].to_numpy() if link_campaign else pd.NA,
            "sent_at_is_exact": events["sent_at_is_exact"].to_numpy(),
            "WhoId": events["salesforce_id"].astype(object).to_numpy(),
            "Subject": task_subject(status, name, status_is_mapped=status_field is not None).to_numpy(),
            "Status": TASK_STATUS,
            "ActivityDate": events["timestamp"].dt.strftime("%Y-%m-%d").astype(object).to_numpy(),
            "Description": description.astype(object).to_numpy(),
        }
    )
    if task_subtype:
        desired["TaskSubtype"] = task_subtype
    if status_field is not None:
        desired[status_field] = status.to_numpy()
    if url_field is not None:
        desired[url_field] = np.where(is_click, url.to_numpy(), pd.NA)
    if key_field is not None:
        desired[key_field] = desired["sync_key"].to_numpy()
    limits = dict(extra_limits or {})
    if url_field is not None:
        limits.setdefault(url_field, URL_FIELD_LENGTH)
    if status_field is not None:
        limits.setdefault(status_field, 255)
    return enforce_field_limits(_finish(desired), "Task", policy=field_limit_policy, extra_limits=limits)


def _stamp(values: pd.Series, fmt: str = _MINUTE_FORMAT) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.strftime(fmt).astype(object)


def _click_lines(raw_email_events: pd.DataFrame) -> pd.Series:
    """Per campaign x member, one line per clicked URL (count, first and last click), oldest first."""
    clicks = raw_email_events[raw_email_events["action"] == "click"]
    if clicks.empty:
        return pd.Series(dtype=object)
    grouped = (
        clicks.assign(timestamp=pd.to_datetime(clicks["timestamp"], utc=True))
        .groupby(["campaign_id", "email_id", "url"])["timestamp"]
        .agg(["size", "min", "max"])
        .reset_index()
        .sort_values(["campaign_id", "email_id", "min", "url"])
    )
    line = (
        "  - " + grouped["url"].astype(str) + " (" + grouped["size"].astype(str) + "x, first " + _stamp(grouped["min"])
    )
    line = line.where(grouped["size"] == 1, line + ", last " + _stamp(grouped["max"])) + ")"
    return line.groupby([grouped["campaign_id"], grouped["email_id"]], sort=False).agg("\n".join)


def _bounce_times(raw_email_events: pd.DataFrame) -> pd.Series:
    bounces = raw_email_events[raw_email_events["action"] == "bounce"]
    return pd.to_datetime(bounces["timestamp"], utc=True).groupby([bounces["campaign_id"], bounces["email_id"]]).max()


def member_response_summaries(member_statuses: pd.DataFrame, raw_email_events: pd.DataFrame) -> pd.Series:
    """Per campaign x member (index), the text a Note shows: what was sent when, opens, clicks with URLs,
    bounce and unsubscribe."""
    members = member_statuses.set_index(["campaign_id", "email_id"])
    address = members["email_address"].astype(str)
    sent = _stamp(members["sent_at"])
    sent_line = ("Sent to " + address + " on " + sent.fillna("an unknown date")).where(
        members["is_recipient"].astype(bool), "Not in the campaign's sent-to list; response recorded for " + address
    )
    sent_line = sent_line.where(
        members["sent_at_is_exact"].astype(bool) | ~members["is_recipient"], sent_line + _APPROXIMATE
    )
    status_line = "Latest status: " + members["latest_status"].astype(str)
    status_line = status_line.where(
        members["latest_status_at"].isna(), status_line + " (" + _stamp(members["latest_status_at"]) + ")"
    )
    opens = members["total_opens"].astype("int64")
    open_line = ("Opens: " + opens.astype(str)).where(
        opens == 0,
        "Opens: "
        + opens.astype(str)
        + ", first "
        + _stamp(members["first_open_at"])
        + ", last "
        + _stamp(members["last_open_at"]),
    )
    clicks = members["total_clicks"].astype("int64")
    click_line = "Clicks: " + clicks.astype(str)
    urls = _click_lines(raw_email_events).reindex(members.index)
    click_line = click_line.where(urls.isna(), click_line + "\n" + urls.fillna(""))
    bounce_at = _bounce_times(raw_email_events).reindex(members.index)
    bounce_line = ("Bounced: " + members["bounce_type"].astype(object).fillna("yes").astype(str)).where(
        members["was_bounced"].astype(bool), "Bounced: no"
    )
    bounce_line = bounce_line.where(bounce_at.isna(), bounce_line + " (" + _stamp(bounce_at) + ")")
    unsubscribe_line = ("Unsubscribed: " + _stamp(members["unsubscribed_at"]).fillna("yes")).where(
        members["was_unsubscribed"].astype(bool), "Unsubscribed: no"
    )
    # Clicks with their URLs come last: they are the only part that grows, so a Body cut at 32,000 loses URLs,
    # never the send, bounce or unsubscribe facts a compliance reader looks for.
    summary = (
        sent_line
        + "\n"
        + status_line
        + "\n"
        + open_line
        + "\n"
        + bounce_line
        + "\n"
        + unsubscribe_line
        + "\n"
        + click_line
    )
    return summary.rename("summary")


def _matched_people(member_statuses: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """Members matched to a person, keyed campaign + Salesforce id; a person reached at several addresses keeps all."""
    people = matches[["campaign_id", "email_id", "salesforce_id"]].drop_duplicates(["campaign_id", "email_id"])
    joined = member_statuses.merge(people, on=["campaign_id", "email_id"], how="inner")
    joined["sync_key"] = joined["campaign_id"] + "|" + joined["salesforce_id"].astype(str)
    return joined.take(sort_positions(joined, ["sync_key", "email_id"])).reset_index(drop=True)


NOTE_TITLE_PREFIX = "Email response: "
NOTE_TITLE_LENGTH = 80


def note_titles(names: pd.Series) -> pd.DataFrame:
    """Per campaign (index), the Note title ``Email response: <name> (<campaign id>)`` within 80 characters.

    The campaign id always survives, so the title tells two campaigns of one name apart (and finds a Note again
    after a crash); a long name is shortened with the marker instead. ``cut`` says which were shortened.
    """
    ids = pd.Series(names.index, index=names.index, dtype=object).astype(str)
    suffix = " (" + ids + ")"
    room = NOTE_TITLE_LENGTH - len(NOTE_TITLE_PREFIX) - suffix.str.len()
    text = names.astype(str)
    cut = text.str.len() > room
    # One row per campaign, so a comprehension over campaigns costs nothing next to the per-person frames.
    shortened = [
        name[: max(limit - len(TRUNCATION_MARKER), 0)] + TRUNCATION_MARKER if too_long else name
        for name, limit, too_long in zip(text, room, cut, strict=True)
    ]
    titles = NOTE_TITLE_PREFIX + pd.Series(shortened, index=names.index, dtype=object) + suffix
    return pd.DataFrame({"title": titles.str.slice(0, NOTE_TITLE_LENGTH), "cut": cut})


def desired_notes(
    member_statuses: pd.DataFrame,
    raw_email_events: pd.DataFrame,
    matches: pd.DataFrame,
    campaign_report: pd.DataFrame,
    *,
    field_limit_policy: str = "truncate",
) -> pd.DataFrame:
    """One Note per campaign x matched Lead/Contact (``ParentId``) summarising the person's response.

    ``Title`` (80) names the campaign and its id (``note_titles``); ``Body`` (32,000) says what was sent when, opens, clicks with their URLs,
    bounce and unsubscribe, one section per address when a person was reached at several. Keyed campaign + person,
    so changed activity updates the Note in place.
    """
    texts = note_texts(member_statuses, raw_email_events, matches, campaign_report)
    return enforce_field_limits(texts, "Note", policy=field_limit_policy)


def note_texts(
    member_statuses: pd.DataFrame,
    raw_email_events: pd.DataFrame,
    matches: pd.DataFrame,
    campaign_report: pd.DataFrame,
) -> pd.DataFrame:
    """The Notes of ``desired_notes`` before field limits: ``ParentId``, ``Title`` and the whole ``Body`` text."""
    people = _matched_people(member_statuses, matches)
    summaries = member_response_summaries(member_statuses, raw_email_events)
    people["section"] = summaries.reindex(pd.MultiIndex.from_frame(people[["campaign_id", "email_id"]])).to_numpy()
    grouped = people.groupby("sync_key", sort=False)
    per_person = grouped.agg(
        campaign_id=("campaign_id", "first"),
        salesforce_id=("salesforce_id", "first"),
        sent_at_is_exact=("sent_at_is_exact", "all"),
        body=("section", "\n\n".join),
    ).reset_index()
    names = campaign_names(campaign_report)
    name = _name_per_row(per_person["campaign_id"], names)
    all_names = pd.concat([names, pd.Series(name.to_numpy(), index=per_person["campaign_id"].to_numpy())])
    titles = note_titles(all_names[~all_names.index.duplicated()])
    header = "Mailchimp campaign " + name + " (" + per_person["campaign_id"] + ")\n\n"
    desired = pd.DataFrame(
        {
            "sync_key": per_person["sync_key"].to_numpy(),
            "campaign_id": per_person["campaign_id"].to_numpy(),
            "sent_at_is_exact": per_person["sent_at_is_exact"].astype(bool).to_numpy(),
            "ParentId": per_person["salesforce_id"].astype(object).to_numpy(),
            "Title": per_person["campaign_id"].map(titles["title"]).to_numpy(),
            "Body": (header + per_person["body"]).to_numpy(),
            "truncated_fields": np.where(per_person["campaign_id"].map(titles["cut"]).fillna(False), "Title", ""),
        }
    )
    return _finish(desired)


def html_sizes(campaign_content: pd.DataFrame) -> pd.Series:
    """UTF-8 bytes of each campaign's sent HTML, by campaign id (NA when Mailchimp gave none)."""
    html = campaign_content.drop_duplicates("campaign_id").set_index("campaign_id")["html"]
    sizes = html.map(lambda text: len(text.encode("utf-8")) if isinstance(text, str) else None)
    return sizes.astype("Int64")


def desired_attachments(
    campaign_content: pd.DataFrame,
    member_statuses: pd.DataFrame,
    matches: pd.DataFrame,
    campaign_report: pd.DataFrame,
    *,
    max_bytes: int = ATTACHMENT_MAX_BYTES,
    holder: str = "Salesforce Attachments hold",
) -> pd.DataFrame:
    """The campaign's sent email (HTML) attached to each matched Lead/Contact, keyed campaign + person.

    ``Body`` is base64 of the UTF-8 HTML, ``ContentType`` text/html. An email larger than ``max_bytes`` (25 MB) is
    refused with a reason on every row of its campaign and no body, never truncated; so is a campaign whose HTML
    Mailchimp did not give.
    """
    people = _matched_people(member_statuses, matches).drop_duplicates("sync_key")
    content = campaign_content.drop_duplicates("campaign_id").set_index("campaign_id")["html"]
    sizes = html_sizes(campaign_content)
    too_large = (sizes > max_bytes).fillna(False).astype(bool)
    sendable = content[
        content.map(lambda html: isinstance(html, str)) & ~too_large.reindex(content.index, fill_value=False)
    ]
    # One encoded body per campaign, shared by reference by every row of that campaign.
    encoded = sendable.map(lambda html: base64.b64encode(html.encode("utf-8")).decode("ascii"))
    names = campaign_names(campaign_report)
    campaign_id = people["campaign_id"]
    size = campaign_id.map(sizes)
    name = _name_per_row(campaign_id, names)
    reason = pd.Series(pd.NA, index=people.index, dtype=object)
    missing = campaign_id.map(content).isna()
    reason = reason.mask(
        missing,
        "Attachment for "
        + people["salesforce_id"].astype(str)
        + ": Mailchimp gave no sent HTML for campaign "
        + campaign_id,
    )
    over = campaign_id.map(too_large).fillna(False).astype(bool)
    reason = reason.mask(
        over,
        "Attachment for "
        + people["salesforce_id"].astype(str)
        + ": the sent email of campaign "
        + campaign_id
        + " is "
        + size.astype(str)
        + f" bytes; {holder} at most {max_bytes} bytes, so it is not attached (never truncated)",
    )
    sent = _stamp(people["sent_at"]).fillna("an unknown date")
    desired = pd.DataFrame(
        {
            "sync_key": people["sync_key"].to_numpy(),
            "campaign_id": campaign_id.to_numpy(),
            "reject_reason": reason.to_numpy(),
            "sent_at_is_exact": people["sent_at_is_exact"].astype(bool).to_numpy(),
            "ParentId": people["salesforce_id"].astype(object).to_numpy(),
            "Name": ("mailchimp-" + campaign_id + ".html").to_numpy(),
            "ContentType": ATTACHMENT_CONTENT_TYPE,
            "Description": (
                "Email sent by Mailchimp campaign " + name + " (" + campaign_id + ") on " + sent
            ).to_numpy(),
            "Body": campaign_id.map(encoded).astype(object).to_numpy(),
        }
    )
    desired = _finish(desired)
    # Description is short text; the org's limit is 500. Name is built short; the body is never cut.
    return enforce_field_limits(desired, "Attachment", extra_limits={"Description": 500, "Name": 255})


def attachment_bytes(desired_attachments_frame: pd.DataFrame) -> int:
    """Decoded bytes of the attachment bodies in a frame (rows without a body count 0)."""
    body = desired_attachments_frame["Body"]
    encoded = body[body.notna()].astype(str)
    if encoded.empty:
        return 0
    lengths = encoded.str.len() * 3 // 4 - encoded.str[-2:].str.count("=")
    return int(lengths.sum())
