"""Pandera models of every frame that crosses an asset boundary (see docs/frames.md); Dagster types: frame_types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes as pandera_dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from campaign_pipeline.core import vocabulary
from campaign_pipeline.core.campaign_types import KNOWN_CAMPAIGN_TYPES

# The shared names (core.vocabulary), re-exported for callers that read them with the schemas.
from campaign_pipeline.core.vocabulary import EVENT_ACTIONS as EVENT_ACTIONS
from campaign_pipeline.core.vocabulary import MEMBER_STATUSES as MEMBER_STATUSES
from campaign_pipeline.core.vocabulary import SEND_STATUSES as SEND_STATUSES


@pandas_engine.Engine.register_dtype
@pandera_dtypes.immutable
class Text(pandas_engine.NpString):
    """pandera's ``str`` (every present value is a Python str, missing values allowed), checked in one C pass.

    pandera checks ``str`` with a Python lambda per value (about 0.3 s per million values here), and the frames hold
    several text columns of a million rows. When pandas infers the present values as all text the answer is known;
    otherwise pandera's own per-value check runs and reports the offending values.
    """

    def check(
        self, pandera_dtype: pandera_dtypes.DataType, data_container: pd.Series | None = None
    ) -> bool | Iterable[bool]:
        if data_container is not None and pd.api.types.infer_dtype(data_container, skipna=True) in ("string", "empty"):
            return pd.Series(True, index=data_container.index, dtype=bool)
        return super().check(pandera_dtype, data_container)

    def __str__(self) -> str:
        return "str"


# Every timestamp in the project is an instant: tz-aware, UTC, nanoseconds.
UtcTimestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]

# Bounce types a frame may hold: Mailchimp's, and "unknown" for a bounce Mailchimp reported without a type.
BOUNCE_TYPES: tuple[str, ...] = (*vocabulary.BOUNCE_TYPES, "unknown")
# Mailchimp's documented campaign types, canonical spelling (core.campaign_types maps the others).
CAMPAIGN_TYPES: tuple[str, ...] = KNOWN_CAMPAIGN_TYPES

SHA1_HEX = r"^[0-9a-f]{40}$"
MD5_HEX = r"^[0-9a-f]{32}$"


class RawEmailEvents(pa.DataFrameModel):
    """Landed Mailchimp events, one row per event, kept forever (opens, clicks, bounces, unsubscribes)."""

    event_id: Series[Text] = pa.Field(
        unique=True,
        str_matches=SHA1_HEX,
        description=(
            "sha1 hex of campaign_id|email_id|action|timestamp(ISO UTC)|url, plus |#occurrence for a same-second "
            "repeat: the event's identity."
        ),
    )
    campaign_id: Series[Text] = pa.Field(
        str_length={"min_value": 1},
        description="Mailchimp campaign id (automation emails: the email's campaign id).",
    )
    email_id: Series[Text] = pa.Field(str_matches=MD5_HEX, description="md5 of the lower-cased, stripped address.")
    email_address: Series[Text] = pa.Field(description="The address as Mailchimp wrote it (may be mixed case).")
    action: Series[Text] = pa.Field(isin=list(EVENT_ACTIONS), description="open, click, bounce or unsubscribe.")
    timestamp: Series[UtcTimestamp] = pa.Field(description="Instant of the event, UTC.")
    url: Series[Text] = pa.Field(
        nullable=True,
        str_length={"min_value": 1},
        description="Clicked URL for click events; NA for every other action (never an empty string).",
    )
    bounce_type: Series[Text] = pa.Field(
        nullable=True,
        isin=list(BOUNCE_TYPES),
        description="hard, soft, or unknown (Mailchimp gave no type) for bounce events; NA otherwise.",
    )
    # Optional so frames built before occurrences existed stay valid; absent means 0 for every row.
    occurrence: Optional[Series[np.int64]] = pa.Field(  # noqa: UP045 - pandera reads Optional[...] as "may be absent"
        ge=0,
        description=(
            "0 for an event, n for the n-th same-second repeat of the same member, action, instant and URL "
            "(Mailchimp counts each, e.g. in clicks_total)."
        ),
    )

    class Config:
        name = "RawEmailEvents"
        description = "Mailchimp email activity and unsubscribes for one campaign, one row per distinct event."
        coerce = False

    @pa.dataframe_check(error="url is only set on click events")
    @classmethod
    def url_only_on_clicks(cls, frame: pd.DataFrame) -> Series[bool]:
        return (frame["action"] == "click") | frame["url"].isna()

    @pa.dataframe_check(error="bounce_type is only set on bounce events")
    @classmethod
    def bounce_type_only_on_bounces(cls, frame: pd.DataFrame) -> Series[bool]:
        return (frame["action"] == "bounce") | frame["bounce_type"].isna()


class CampaignRecipients(pa.DataFrameModel):
    """Who a campaign was sent to (Mailchimp sent-to), one row per campaign x member."""

    campaign_id: Series[Text] = pa.Field(str_length={"min_value": 1}, description="Mailchimp campaign id.")
    email_id: Series[Text] = pa.Field(str_matches=MD5_HEX, description="md5 of the lower-cased, stripped address.")
    email_address: Series[Text] = pa.Field(description="The address as Mailchimp wrote it.")
    send_status: Series[Text] = pa.Field(
        isin=list(SEND_STATUSES),
        description="sent-to status: sent, or hard / soft when the send bounced.",
    )
    sent_at: Series[UtcTimestamp] = pa.Field(
        description="Campaign send time (automation: the email's send time, approximate)."
    )
    sent_at_is_exact: Series[bool] = pa.Field(description="False for automation emails, whose sent_at is approximate.")

    class Config:
        name = "CampaignRecipients"
        description = "Recipients of a campaign from Mailchimp sent-to."
        coerce = False
        unique = ("campaign_id", "email_id")


class MailchimpCampaignReport(pa.DataFrameModel):
    """Mailchimp's own report totals, one row per campaign; the only source of forwards and abuse reports."""

    campaign_id: Series[Text] = pa.Field(unique=True, str_length={"min_value": 1}, description="Mailchimp campaign id.")
    campaign_title: Series[Text] = pa.Field(nullable=True, description="Campaign title (settings.title).")
    subject_line: Series[Text] = pa.Field(nullable=True, description="Subject line of the email.")
    # Not limited to the known types: Mailchimp adds types, and a new one lands with a warning instead of failing.
    campaign_type: Series[Text] = pa.Field(
        str_length={"min_value": 1},
        description=(
            "Mailchimp campaign type, canonical: regular, plaintext, absplit, variate, rss (one send of an RSS "
            "campaign) or automation (automation emails, also when Mailchimp writes auto); an unknown type as written."
        ),
    )
    send_time: Series[UtcTimestamp] = pa.Field(nullable=True, description="When the campaign was sent, UTC.")
    emails_sent: Series[np.int64] = pa.Field(ge=0, description="Emails sent.")
    abuse_reports: Series[np.int64] = pa.Field(ge=0, description="Abuse (spam) reports.")
    unsubscribed: Series[np.int64] = pa.Field(ge=0, description="Unsubscribes attributed to the campaign.")
    hard_bounces: Series[np.int64] = pa.Field(ge=0, description="Hard bounces.")
    soft_bounces: Series[np.int64] = pa.Field(ge=0, description="Soft bounces.")
    forwards_count: Series[np.int64] = pa.Field(ge=0, description="Times the campaign was forwarded.")
    forwards_opens: Series[np.int64] = pa.Field(ge=0, description="Opens of forwarded copies.")
    opens_total: Series[np.int64] = pa.Field(ge=0, description="All opens, repeats included.")
    unique_opens: Series[np.int64] = pa.Field(ge=0, description="Members who opened at least once.")
    clicks_total: Series[np.int64] = pa.Field(ge=0, description="All clicks, repeats included.")
    unique_clicks: Series[np.int64] = pa.Field(ge=0, description="Distinct (member, URL) clicks as Mailchimp counts.")
    unique_subscriber_clicks: Series[np.int64] = pa.Field(ge=0, description="Members who clicked at least once.")
    open_rate: Series[float] = pa.Field(ge=0, le=1, description="Mailchimp's open rate, a fraction 0..1.")
    click_rate: Series[float] = pa.Field(ge=0, le=1, description="Mailchimp's click rate, a fraction 0..1.")
    automation_id: Optional[Series[Text]] = pa.Field(  # noqa: UP045 - Optional: "may be absent"
        nullable=True,
        description="Automation emails: the id of their Mailchimp automation workflow (from /automations); else NA.",
    )
    automation_title: Optional[Series[Text]] = pa.Field(  # noqa: UP045
        nullable=True, description="Automation emails: their workflow's title; else NA."
    )
    rss_campaign_id: Optional[Series[Text]] = pa.Field(  # noqa: UP045
        nullable=True,
        description="RSS sends: the id of their Mailchimp RSS campaign (the send's parent_campaign_id); else NA.",
    )
    rss_campaign_title: Optional[Series[Text]] = pa.Field(  # noqa: UP045
        nullable=True, description="RSS sends: their RSS campaign's title; else NA."
    )

    class Config:
        name = "MailchimpCampaignReport"
        description = "Mailchimp's campaign report (reports/{campaign_id}), flattened to one row."
        coerce = False


class MemberStatuses(pa.DataFrameModel):
    """Per campaign x member: latest status and the member metrics analysts know from dbt_mailchimp."""

    campaign_id: Series[Text] = pa.Field(description="Mailchimp campaign id.")
    email_id: Series[Text] = pa.Field(str_matches=MD5_HEX, description="md5 of the lower-cased, stripped address.")
    email_address: Series[Text] = pa.Field(
        description="The address from sent-to, or from the member's latest event when not a recipient."
    )
    is_recipient: Series[bool] = pa.Field(
        description="False for members with events but not in sent-to: kept and reported, never dropped."
    )
    send_status: Series[Text] = pa.Field(
        nullable=True,
        isin=list(SEND_STATUSES),
        description="sent-to status; NA when not a recipient.",
    )
    sent_at: Series[UtcTimestamp] = pa.Field(
        nullable=True,
        description=(
            "Send time; NaT when not a recipient. Approximate (sent_at_is_exact false): the email's send time, or the "
            "member's first event when that is earlier, so never after the member's first activity."
        ),
    )
    sent_at_is_exact: Series[bool] = pa.Field(
        description="False when sent_at is approximate (automation emails) or unknown (not a recipient)."
    )
    latest_status: Series[Text] = pa.Field(
        isin=list(MEMBER_STATUSES),
        description="Clicked, Opened, Bounced, Unsubscribed or Sent, by the status rule.",
    )
    latest_status_at: Series[UtcTimestamp] = pa.Field(
        nullable=True,
        description="Instant of the event behind latest_status; sent_at for Sent.",
    )
    total_opens: Series[np.int64] = pa.Field(ge=0, description="Opens, repeats included.")
    unique_opens: Series[np.int64] = pa.Field(isin=[0, 1], description="1 when the member opened at least once.")
    total_clicks: Series[np.int64] = pa.Field(ge=0, description="Clicks, repeats included.")
    unique_clicks: Series[np.int64] = pa.Field(isin=[0, 1], description="1 when the member clicked at least once.")
    first_open_at: Series[UtcTimestamp] = pa.Field(nullable=True, description="First open; NaT when none.")
    last_open_at: Series[UtcTimestamp] = pa.Field(nullable=True, description="Last open; NaT when none.")
    first_click_at: Series[UtcTimestamp] = pa.Field(nullable=True, description="First click; NaT when none.")
    last_click_at: Series[UtcTimestamp] = pa.Field(nullable=True, description="Last click; NaT when none.")
    time_to_open_minutes: Series[float] = pa.Field(
        nullable=True,
        description=(
            "Minutes from sent_at to first open; NaN when not opened, no send time, or the send time is approximate "
            "(sent_at_is_exact false): never negative."
        ),
    )
    last_clicked_url: Series[Text] = pa.Field(nullable=True, description="URL of the latest click; NA when none.")
    distinct_urls_clicked: Series[np.int64] = pa.Field(ge=0, description="Distinct URLs the member clicked.")
    bounce_type: Series[Text] = pa.Field(
        nullable=True,
        isin=list(BOUNCE_TYPES),
        description=(
            "hard, soft or unknown (a bounce event without a type): hard wins over soft over unknown, from events "
            "or from the sent-to status; NA when not bounced."
        ),
    )
    unsubscribed_at: Series[UtcTimestamp] = pa.Field(nullable=True, description="Latest unsubscribe; NaT when none.")
    was_opened: Series[bool] = pa.Field(description="Opened at least once.")
    was_clicked: Series[bool] = pa.Field(description="Clicked at least once.")
    was_bounced: Series[bool] = pa.Field(description="Bounced (event or sent-to hard/soft).")
    was_unsubscribed: Series[bool] = pa.Field(description="Unsubscribed.")

    class Config:
        name = "MemberStatuses"
        description = "One row per campaign x member: latest status and per-member response metrics."
        coerce = False
        strict = True
        unique = ("campaign_id", "email_id")

    @pa.dataframe_check(error="non-recipients carry no send_status")
    @classmethod
    def send_status_only_for_recipients(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["is_recipient"] | frame["send_status"].isna()

    @pa.dataframe_check(error="latest_status Sent is only possible for recipients")
    @classmethod
    def sent_only_for_recipients(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["is_recipient"] | (frame["latest_status"] != "Sent")

    @pa.dataframe_check(error="was_opened / unique_opens / total_opens disagree")
    @classmethod
    def opens_agree(cls, frame: pd.DataFrame) -> Series[bool]:
        return (frame["was_opened"] == (frame["total_opens"] > 0)) & (frame["unique_opens"] == frame["was_opened"])

    @pa.dataframe_check(error="was_clicked / unique_clicks / total_clicks disagree")
    @classmethod
    def clicks_agree(cls, frame: pd.DataFrame) -> Series[bool]:
        return (frame["was_clicked"] == (frame["total_clicks"] > 0)) & (frame["unique_clicks"] == frame["was_clicked"])

    @pa.dataframe_check(error="was_bounced disagrees with bounce_type, or was_unsubscribed with unsubscribed_at")
    @classmethod
    def bounce_and_unsubscribe_agree(cls, frame: pd.DataFrame) -> Series[bool]:
        return (frame["was_bounced"] == frame["bounce_type"].notna()) & (
            frame["was_unsubscribed"] == frame["unsubscribed_at"].notna()
        )


class CampaignTotals(pa.DataFrameModel):
    """Per campaign totals computed from member statuses, plus the counts only Mailchimp's report has."""

    campaign_id: Series[Text] = pa.Field(unique=True, description="Mailchimp campaign id.")
    emails_sent: Series[np.int64] = pa.Field(ge=0, description="Recipients in sent-to.")
    delivered: Series[np.int64] = pa.Field(ge=0, description="emails_sent minus recipients who bounced.")
    unique_opens: Series[np.int64] = pa.Field(ge=0, description="Recipients who opened at least once.")
    total_opens: Series[np.int64] = pa.Field(ge=0, description="Opens by recipients, repeats included.")
    unique_subscriber_clicks: Series[np.int64] = pa.Field(ge=0, description="Recipients who clicked at least once.")
    total_clicks: Series[np.int64] = pa.Field(ge=0, description="Clicks by recipients, repeats included.")
    hard_bounces: Series[np.int64] = pa.Field(ge=0, description="Recipients whose bounce is hard.")
    soft_bounces: Series[np.int64] = pa.Field(ge=0, description="Recipients whose bounce is soft.")
    unsubscribes: Series[np.int64] = pa.Field(ge=0, description="Recipients who unsubscribed.")
    forwards: Series[np.int64] = pa.Field(ge=0, description="From Mailchimp's report only (forwards_count).")
    forward_opens: Series[np.int64] = pa.Field(ge=0, description="From Mailchimp's report only (forwards_opens).")
    abuse_reports: Series[np.int64] = pa.Field(ge=0, description="From Mailchimp's report only.")
    open_rate: Series[float] = pa.Field(ge=0, le=1, description="unique_opens / delivered; 0 when delivered is 0.")
    click_rate: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="unique_subscriber_clicks / delivered; 0 when delivered is 0.",
    )
    click_to_open_rate: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="unique_subscriber_clicks / unique_opens; 0 when unique_opens is 0.",
    )
    non_recipient_members: Series[np.int64] = pa.Field(
        ge=0,
        description="Members with events who are not in sent-to (reported, not counted above).",
    )

    class Config:
        name = "CampaignTotals"
        description = "One row per campaign: sends, opens, clicks, bounces, unsubscribes, forwards and rates."
        coerce = False
        strict = True

    @pa.dataframe_check(error="delivered must equal emails_sent minus hard and soft bounces (never below 0)")
    @classmethod
    def delivered_is_sent_minus_bounces(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["delivered"] == (frame["emails_sent"] - frame["hard_bounces"] - frame["soft_bounces"]).clip(
            lower=0
        )

    @pa.dataframe_check(error="unique counts cannot exceed totals or emails sent")
    @classmethod
    def unique_within_totals(cls, frame: pd.DataFrame) -> Series[bool]:
        return (
            (frame["unique_opens"] <= frame["total_opens"])
            & (frame["unique_subscriber_clicks"] <= frame["total_clicks"])
            & (frame["unique_opens"] <= frame["emails_sent"])
            & (frame["unique_subscriber_clicks"] <= frame["emails_sent"])
        )


def empty_frame(model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """A zero-row frame with the model's columns and dtypes, for campaigns with nothing to report yet."""
    schema = model.to_schema()
    return pd.DataFrame(
        {name: pd.Series(dtype=column.dtype.type) for name, column in schema.columns.items()},
    )
