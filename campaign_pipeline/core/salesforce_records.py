"""Desired Salesforce records (Campaign, CampaignMemberStatus, CampaignMember) built from the pipeline's frames.

Every desired-record frame has the same shape, which the sync engine relies on for any record kind:

- meta columns (``META_COLUMNS``): ``sync_key`` (stable identity of the record, unique in the frame),
  ``campaign_id`` (the Mailchimp campaign, for partition-scoped bookkeeping), ``parent_key`` (sync key of the
  parent record whose Salesforce Id fills the kind's parent reference field, e.g. CampaignId; NA if none),
  ``reject_reason`` (NA, or why the record must not be sent), ``truncated_fields`` (comma-separated names of
  fields shortened to fit), ``sent_at_is_exact`` (False when the send time behind the record is approximate);
- every other column is a Salesforce field API name holding the value to write (NA = null).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from campaign_pipeline.core.campaign_types import campaign_type_label, canonical_campaign_type, is_automation_type
from campaign_pipeline.core.ordering import sort_positions
from campaign_pipeline.core.vocabulary import MEMBER_STATUS_DISPLAY_ORDER, RESPONDED_STATUSES

META_COLUMNS: tuple[str, ...] = (
    "sync_key",
    "campaign_id",
    "parent_key",
    "reject_reason",
    "truncated_fields",
    "sent_at_is_exact",
)
# Columns the diff adds next to the meta columns; never Salesforce fields either.
DIFF_COLUMNS: tuple[str, ...] = ("content_hash", "salesforce_id", "action", "is_retry", "needs_lookup")
# Ledger kinds; one per desired-record frame.
CAMPAIGN = "campaign"
CAMPAIGN_MEMBER_STATUS = "campaign_member_status"
CAMPAIGN_MEMBER = "campaign_member"

# Appended to text shortened to fit a Salesforce field, so a reader knows it was cut.
TRUNCATION_MARKER = " [...]"

# Salesforce's documented lengths for the standard text fields we write (design §2 "Field limits").
FIELD_LIMITS: dict[str, dict[str, int]] = {
    "Campaign": {"Name": 80, "Description": 32000, "Type": 255, "Status": 255},
    "CampaignMemberStatus": {"Label": 40},
    "CampaignMember": {"Status": 40},
    "Task": {"Subject": 255, "Description": 32000},
    "Note": {"Title": 80, "Body": 32000},
    "Lead": {"LastName": 80, "Company": 255, "Email": 80, "LeadSource": 255},
}

# CampaignMemberStatus labels every Campaign needs, with whether they count as a response, in the order they
# appear in the Campaign's status picklist. The sync engine numbers new ones (SortOrder) after the Campaign's
# existing statuses in this order; Sent, which Salesforce makes itself on a new Campaign, is adopted, not created.
MEMBER_STATUS_LABELS: tuple[tuple[str, bool], ...] = tuple(
    (status, status in RESPONDED_STATUSES) for status in MEMBER_STATUS_DISPLAY_ORDER
)
APPROXIMATE_SEND_NOTE = (
    "Send time is approximate: automation emails give no per-recipient send time (sent_at_is_exact = false)."
)


def salesforce_field_columns(desired: pd.DataFrame) -> list[str]:
    """The columns of a desired-record frame that are Salesforce fields (all but the meta and diff columns)."""
    return [column for column in desired.columns if column not in META_COLUMNS and column not in DIFF_COLUMNS]


def _with_meta(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the meta columns a builder did not set, with their neutral values, meta columns first."""
    defaults = {
        "parent_key": pd.NA,
        "reject_reason": pd.NA,
        "truncated_fields": "",
        "sent_at_is_exact": True,
    }
    for column, value in defaults.items():
        if column not in frame.columns:
            frame[column] = value
    frame["parent_key"] = frame["parent_key"].astype(object)
    frame["reject_reason"] = frame["reject_reason"].astype(object)
    frame["sent_at_is_exact"] = frame["sent_at_is_exact"].astype(bool)
    fields = [column for column in frame.columns if column not in META_COLUMNS]
    return frame[list(META_COLUMNS) + fields].reset_index(drop=True)


def enforce_field_limits(
    desired: pd.DataFrame,
    sobject: str,
    *,
    policy: str = "truncate",
    extra_limits: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Make every text value fit its field: truncate with TRUNCATION_MARKER, or reject the row with a reason.

    ``extra_limits`` adds lengths learnt elsewhere (the org's describe for custom fields). Rows already rejected
    keep their first reason.
    """
    if policy not in ("truncate", "reject"):
        raise ValueError(f"field limit policy must be 'truncate' or 'reject', got {policy!r}")
    limits = {**FIELD_LIMITS.get(sobject, {}), **(extra_limits or {})}
    result = desired.copy()
    for field_name, limit in limits.items():
        if field_name not in result.columns:
            continue
        values = result[field_name]
        is_text = pd.Series([isinstance(value, str) for value in values], index=values.index, dtype=bool)
        lengths = values.where(is_text).str.len()
        too_long = (lengths > limit).fillna(False).astype(bool)
        if not too_long.any():
            continue
        if policy == "truncate":
            keep = max(limit - len(TRUNCATION_MARKER), 0)
            result.loc[too_long, field_name] = values[too_long].str.slice(0, keep) + TRUNCATION_MARKER
            marks = result.loc[too_long, "truncated_fields"]
            result.loc[too_long, "truncated_fields"] = np.where(marks == "", field_name, marks + "," + field_name)
        else:
            reasons = (
                f"{sobject}.{field_name} is "
                + lengths[too_long].astype(int).astype(str)
                + f" characters; Salesforce allows {limit}"
            )
            unset = too_long & result["reject_reason"].isna()
            result.loc[unset, "reject_reason"] = reasons[unset]
    return result


def _metric_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    """A metric column as values Salesforce accepts: NaN/NaT become NA, everything else is kept."""
    values = frame[metric]
    return values.astype(object).where(values.notna(), pd.NA)


def desired_campaigns(
    campaign_totals: pd.DataFrame,
    campaign_report: pd.DataFrame,
    *,
    totals_mapping: dict[str, str],
    key_field: str | None = None,
    field_limit_policy: str = "truncate",
) -> pd.DataFrame:
    """One Campaign per Mailchimp campaign: name, type, start date, a description, and the mapped totals.

    The description says where the Campaign comes from and, for automation emails, that the send time is
    approximate; ``sent_at_is_exact`` carries the same fact for the UI.
    """
    report_columns = [
        "campaign_id",
        "campaign_title",
        "subject_line",
        "campaign_type",
        "send_time",
    ]
    campaigns = campaign_totals.merge(campaign_report[report_columns], on="campaign_id", how="left")
    title = (
        campaigns["campaign_title"]
        .astype(object)
        .where(campaigns["campaign_title"].notna() & (campaigns["campaign_title"] != ""))
    )
    subject = (
        campaigns["subject_line"]
        .astype(object)
        .where(campaigns["subject_line"].notna() & (campaigns["subject_line"] != ""))
    )
    name = title.fillna(subject).fillna("Mailchimp campaign " + campaigns["campaign_id"])
    campaign_types = campaigns["campaign_type"].map(canonical_campaign_type)
    is_exact = ~campaign_types.map(is_automation_type).to_numpy(dtype=bool)
    send_time = pd.to_datetime(campaigns["send_time"], utc=True)
    sent_text = send_time.dt.strftime("%Y-%m-%d %H:%M UTC").fillna("unknown")
    # The Campaign's Type stays "Email" (a standard picklist value); which kind of Mailchimp send it was is said here.
    description = (
        "Mailchimp "
        + campaign_types.map(campaign_type_label).astype(str)
        + " "
        + campaigns["campaign_id"]
        + " (subject: "
        + subject.fillna("none").astype(str)
        + "), sent "
        + sent_text
        + "."
    )
    description = description.where(is_exact, description + " " + APPROXIMATE_SEND_NOTE)
    desired = pd.DataFrame(
        {
            "sync_key": campaigns["campaign_id"].to_numpy(),
            "campaign_id": campaigns["campaign_id"].to_numpy(),
            "sent_at_is_exact": is_exact,
            "Name": name.to_numpy(),
            "Type": "Email",
            "Status": "Completed",
            "IsActive": True,
            "StartDate": send_time.dt.strftime("%Y-%m-%d").astype(object).where(send_time.notna(), pd.NA).to_numpy(),
            "Description": description.to_numpy(),
        }
    )
    for metric, field_name in totals_mapping.items():
        desired[field_name] = _metric_values(campaigns, metric).to_numpy()
    if key_field:
        desired[key_field] = campaigns["campaign_id"].to_numpy()
    return enforce_field_limits(_with_meta(desired), "Campaign", policy=field_limit_policy)


def desired_campaign_member_statuses(
    campaign_ids: pd.Series | list[str],
) -> pd.DataFrame:
    """The CampaignMemberStatus labels every synced Campaign needs before members can carry them.

    Rows are per Campaign in picklist order (``MEMBER_STATUS_DISPLAY_ORDER``); the frame holds no SortOrder, since the
    right numbers depend on the statuses the Campaign already has in the org: the engine assigns them on create.
    """
    ids = pd.Series(pd.unique(pd.Series(campaign_ids, dtype=object)), dtype=object)
    labels = pd.DataFrame(MEMBER_STATUS_LABELS, columns=["Label", "HasResponded"])
    grid = pd.DataFrame({"campaign_id": ids}).merge(labels, how="cross")
    desired = pd.DataFrame(
        {
            "sync_key": (grid["campaign_id"] + "|status|" + grid["Label"]).to_numpy(),
            "campaign_id": grid["campaign_id"].to_numpy(),
            "parent_key": grid["campaign_id"].to_numpy(),
            "Label": grid["Label"].to_numpy(),
            "HasResponded": grid["HasResponded"].astype(bool).to_numpy(),
        }
    )
    return _with_meta(desired)


def desired_campaign_members(
    member_statuses: pd.DataFrame,
    matches: pd.DataFrame,
    *,
    member_mapping: dict[str, str],
    key_field: str | None = None,
    field_limit_policy: str = "truncate",
    extra_limits: dict[str, int] | None = None,
) -> pd.DataFrame:
    """One CampaignMember per matched member: the Lead or Contact, latest status and mapped member metrics.

    ``matches`` is the salesforce_matches frame (campaign_id, email_id, salesforce_id, salesforce_object).
    The sync key is campaign id + Salesforce person id, because Salesforce allows one member per Campaign and
    person; if two Mailchimp members resolve to one person the most recent status wins, deterministically.
    """
    needed = ["campaign_id", "email_id", "sent_at_is_exact", "latest_status", "latest_status_at"]
    needed += [metric for metric in member_mapping if metric not in needed]
    joined = member_statuses[needed].merge(
        matches[["campaign_id", "email_id", "salesforce_id", "salesforce_object"]],
        on=["campaign_id", "email_id"],
        how="inner",
    )
    joined["sync_key"] = joined["campaign_id"] + "|" + joined["salesforce_id"]
    joined = joined.take(
        sort_positions(joined, ["sync_key", "latest_status_at", "email_id"], descending=["latest_status_at"])
    )
    sync_keys = joined["sync_key"].to_numpy(dtype=object)
    first_of_key = np.ones(len(sync_keys), dtype=bool)
    first_of_key[1:] = sync_keys[1:] != sync_keys[:-1]
    joined = joined[first_of_key]
    is_contact = (joined["salesforce_object"] == "Contact").to_numpy()
    person_ids = joined["salesforce_id"].astype(object).to_numpy()
    desired = pd.DataFrame(
        {
            "sync_key": joined["sync_key"].to_numpy(),
            "campaign_id": joined["campaign_id"].to_numpy(),
            "parent_key": joined["campaign_id"].to_numpy(),
            "sent_at_is_exact": joined["sent_at_is_exact"].astype(bool).to_numpy(),
            "ContactId": np.where(is_contact, person_ids, pd.NA),
            "LeadId": np.where(is_contact, pd.NA, person_ids),
            "Status": joined["latest_status"].to_numpy(),
        }
    )
    for metric, field_name in member_mapping.items():
        desired[field_name] = _metric_values(joined, metric).to_numpy()
    if key_field:
        desired[key_field] = joined["sync_key"].to_numpy()
    return enforce_field_limits(
        _with_meta(desired),
        "CampaignMember",
        policy=field_limit_policy,
        extra_limits=extra_limits,
    )


def desired_leads(unmatched_members: pd.DataFrame, *, company: str, lead_source: str) -> pd.DataFrame:
    """A Lead per unmatched address (profile: create_leads_for_unmatched), keyed by the lower-cased email."""
    first = unmatched_members.drop_duplicates("email_id").reset_index(drop=True)
    local_part = first["email_address"].str.strip().str.split("@").str[0]
    desired = pd.DataFrame(
        {
            "sync_key": ("lead|" + first["email_id"]).to_numpy(),
            "campaign_id": first["campaign_id"].to_numpy(),
            "LastName": local_part.where(local_part.str.len() > 0, "Unknown").to_numpy(),
            "Company": company,
            "Email": first["email_address"].str.strip().to_numpy(),
            "LeadSource": lead_source,
        }
    )
    return enforce_field_limits(_with_meta(desired), "Lead")
