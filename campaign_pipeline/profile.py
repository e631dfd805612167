"""The sync profile: which mode, which audience, matching policy and field mapping, validated at load."""

from __future__ import annotations

import difflib
import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# The mode list lives with the mode table; SYNC_MODES is re-exported for callers that read it here.
from campaign_pipeline.modes import SYNC_MODES as SYNC_MODES
from campaign_pipeline.modes import SyncMode

# Metrics a user may map onto Campaign fields: the campaign_totals columns (docs/frames.md).
CAMPAIGN_TOTALS_METRICS: tuple[str, ...] = (
    "emails_sent",
    "delivered",
    "unique_opens",
    "total_opens",
    "unique_subscriber_clicks",
    "total_clicks",
    "hard_bounces",
    "soft_bounces",
    "unsubscribes",
    "forwards",
    "forward_opens",
    "abuse_reports",
    "open_rate",
    "click_rate",
    "click_to_open_rate",
    "non_recipient_members",
)
# Metrics a user may map onto CampaignMember fields: the member_statuses metric columns.
MEMBER_METRICS: tuple[str, ...] = (
    "total_opens",
    "unique_opens",
    "total_clicks",
    "unique_clicks",
    "first_open_at",
    "last_open_at",
    "first_click_at",
    "last_click_at",
    "time_to_open_minutes",
    "last_clicked_url",
    "distinct_urls_clicked",
    "bounce_type",
    "unsubscribed_at",
    "latest_status_at",
    "sent_at",
    "sent_at_is_exact",
    "was_opened",
    "was_clicked",
    "was_bounced",
    "was_unsubscribed",
)
# Salesforce API names: a letter, then letters, digits and single underscores (custom fields end in __c).
_SALESFORCE_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# No Mailchimp campaign was sent before this: an earlier history_since is a typo (2206 for 2026, say).
MAILCHIMP_FIRST_SEND = date(2001, 1, 1)


class ProfileError(ValueError):
    """A sync profile that cannot be used; the message names the file, the field and what is allowed."""


class MailchimpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list_id: str | None = Field(
        default=None,
        description="Mailchimp audience (list) whose campaigns are synced; None = the account's only list.",
    )
    attribution_window_days: int = Field(
        default=30,
        ge=0,
        le=365,
        description="Days after a send during which a campaign is re-synced.",
    )
    filter_bots: bool = Field(
        default=False,
        description=(
            "Fetch email activity with Mailchimp's `filter_bots=true`: bot and privacy-proxy opens are left out, "
            "and totals reconcile against the report's proxy-excluded opens."
        ),
    )
    history_since: date | None = Field(
        default=None,
        description=(
            "UTC date (YYYY-MM-DD) from which the new-sends sensor's first tick discovers campaigns, instead of "
            "looking back 7 days; `campaign-pipeline backfill --since` brings in history in batches any time."
        ),
    )

    @field_validator("history_since")
    @classmethod
    def _history_since_is_a_plausible_date(cls, value: date | None) -> date | None:
        if value is not None and value < MAILCHIMP_FIRST_SEND:
            raise ValueError(f"{value.isoformat()} is before Mailchimp's first campaigns ({MAILCHIMP_FIRST_SEND})")
        return value


class MatchingPolicy(BaseModel):
    """Step 3: how Mailchimp members are matched to Salesforce Leads/Contacts, and what happens to the rest."""

    model_config = ConfigDict(extra="forbid")

    create_leads_for_unmatched: bool = Field(
        default=False,
        description="Create a Lead for each member that matches no Lead or Contact.",
    )
    lead_company_default: str = Field(
        default="[not provided]",
        min_length=1,
        max_length=255,
        description="Lead.Company (required by Salesforce) for Leads created from unmatched members.",
    )
    lead_source: str = Field(
        default="Mailchimp",
        max_length=255,
        description="Lead.LeadSource of created Leads.",
    )
    sync_opt_out: bool = Field(
        default=False,
        description=(
            "Opt-out sync: set HasOptedOutOfEmail = true on the matched Contact/Lead of each member who unsubscribed "
            "from a synced campaign. Never set back to false."
        ),
    )


def _check_field_name(field_name: str) -> str:
    if not _SALESFORCE_FIELD_NAME.fullmatch(field_name) or "__" in field_name.removesuffix("__c"):
        raise ValueError(f"{field_name!r} is not a Salesforce field API name (e.g. NumberSent or Total_Opens__c)")
    return field_name


class FieldMapping(BaseModel):
    """Step 4: which computed metric goes into which Salesforce field. Defaults need no custom fields."""

    model_config = ConfigDict(extra="forbid")

    campaign: dict[str, str] = Field(
        default_factory=dict,
        description=f"campaign_totals metric -> Campaign field. Metrics: {', '.join(CAMPAIGN_TOTALS_METRICS)}.",
    )
    campaign_member: dict[str, str] = Field(
        default_factory=dict,
        description=f"member metric -> CampaignMember field. Metrics: {', '.join(MEMBER_METRICS)}.",
    )
    campaign_key_field: str | None = Field(
        default=None,
        description="Campaign external-ID field that holds the Mailchimp campaign id (upserts by it when set).",
    )
    campaign_member_key_field: str | None = Field(
        default=None,
        description="CampaignMember external-ID field that holds the member's sync key.",
    )
    task_status_field: str | None = Field(
        default=None,
        description="Task field for the response type (modes activity); None = Task.Subject only.",
    )
    task_url_field: str | None = Field(
        default=None,
        description="Task field for the clicked URL (modes activity); None = Task.Description.",
    )
    task_key_field: str | None = Field(default=None, description="Task external-ID field that holds the event id.")

    @field_validator("campaign")
    @classmethod
    def _campaign_metrics_known(cls, mapping: dict[str, str]) -> dict[str, str]:
        return _check_mapping(mapping, CAMPAIGN_TOTALS_METRICS, "Campaign")

    @field_validator("campaign_member")
    @classmethod
    def _member_metrics_known(cls, mapping: dict[str, str]) -> dict[str, str]:
        return _check_mapping(mapping, MEMBER_METRICS, "CampaignMember")

    @field_validator(
        "campaign_key_field",
        "campaign_member_key_field",
        "task_status_field",
        "task_url_field",
        "task_key_field",
    )
    @classmethod
    def _single_field_name(cls, field_name: str | None) -> str | None:
        return None if field_name is None else _check_field_name(field_name)


# Fields the record builders set themselves; a mapping onto them would silently overwrite ours.
_RESERVED_FIELDS = {
    "Campaign": {
        "Id",
        "Name",
        "Type",
        "Status",
        "StartDate",
        "IsActive",
        "Description",
    },
    "CampaignMember": {"Id", "CampaignId", "LeadId", "ContactId", "Status"},
}


def _check_mapping(mapping: dict[str, str], allowed_metrics: tuple[str, ...], sobject: str) -> dict[str, str]:
    for metric, field_name in mapping.items():
        if metric not in allowed_metrics:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(allowed_metrics)}")
        _check_field_name(field_name)
        if field_name in _RESERVED_FIELDS[sobject]:
            raise ValueError(
                f"{sobject}.{field_name} is set by the sync itself and cannot be mapped (metric {metric!r})"
            )
    targets = list(mapping.values())
    doubled = sorted({name for name in targets if targets.count(name) > 1})
    if doubled:
        raise ValueError(f"{sobject} field(s) {', '.join(doubled)} mapped from more than one metric")
    return mapping


class SyncSettings(BaseModel):
    """How the push to Salesforce behaves: API choice, budgets, and a preview switch."""

    model_config = ConfigDict(extra="forbid")

    bulk_threshold: int = Field(
        default=2000,
        ge=1,
        description="Records of one kind at or above which Bulk API 2.0 is used instead of Collections.",
    )
    api_call_budget: int = Field(default=5000, ge=1, description="Most Salesforce API calls one run may make.")
    limit_usage_stop_fraction: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Stop the run cleanly once the org's daily API usage (Sforce-Limit-Info) passes this fraction.",
    )
    collections_max_request_bytes: int = Field(
        default=25_000_000,
        ge=1,
        le=25_000_000,
        description=(
            "Most bytes of JSON in one sObject Collections call (lower it when a proxy in front of Salesforce "
            "limits request size); a record bigger than this on its own goes alone through the sObject resource."
        ),
    )
    preview_only: bool = Field(default=False, description="Compute and show what would change; write nothing.")
    field_limit_policy: Literal["truncate", "reject"] = Field(
        default="truncate",
        description="Too-long text: truncate with a marker, or reject the record with a reason.",
    )


class ActivitySettings(BaseModel):
    """Modes activity / campaign_and_activity / notes: how events become Tasks and Notes."""

    model_config = ConfigDict(extra="forbid")

    one_task_per_url: bool = Field(
        default=False, description="One Task per distinct clicked URL instead of one per click event."
    )
    task_subtype: str | None = Field(
        default=None,
        max_length=40,
        description="Task.TaskSubtype of created Tasks; None = the engine's default (Email).",
    )
    attach_sent_email: bool = Field(
        default=True, description="Mode notes: attach the sent email (HTML) to the Lead/Contact."
    )
    notes_format: Literal["enhanced", "classic"] = Field(
        default="enhanced",
        description=(
            "Mode notes: 'enhanced' writes Enhanced Notes (ContentNote, linked to the Lead/Contact with "
            "ContentDocumentLink) and the sent email as a File (ContentVersion), which Lightning Experience shows "
            "and edits; 'classic' writes Note and Attachment records (read-only in Lightning's Notes & "
            "Attachments list)."
        ),
    )


class CampaignHierarchy(BaseModel):
    """Modes that write Campaigns: parent Campaigns (ParentId), so Salesforce's hierarchy roll-ups add up."""

    model_config = ConfigDict(extra="forbid")

    automation_parents: bool = Field(
        default=True,
        description="Put the emails of each Mailchimp automation workflow under one parent Campaign named after it.",
    )
    rss_parents: bool = Field(
        default=True,
        description=(
            "Put the sends of each Mailchimp RSS campaign under one parent Campaign named after the RSS campaign "
            "(keyed by its id); off = RSS sends are like any other campaign (under regular_parent when set)."
        ),
    )
    regular_parent: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description=(
            "Put every other campaign (regular, plain-text, A/B split, multivariate; RSS sends when rss_parents is "
            "off) under one parent Campaign of this name; None = no parent for them."
        ),
    )

    @property
    def enabled(self) -> bool:
        return self.automation_parents or self.rss_parents or bool(self.regular_parent)


class SyncProfile(BaseModel):
    """Step 1 mode, step 2 audience, step 3 matching, step 4 field mapping, then sync settings."""

    model_config = ConfigDict(extra="forbid")

    mode: SyncMode = "campaign"
    mailchimp: MailchimpSettings = MailchimpSettings()
    matching: MatchingPolicy = MatchingPolicy()
    status_rule: Literal["latest", "highest_rank"] = Field(
        default="latest",
        description="latest: status of the most recent event; highest_rank: Clicked > Opened > Bounced > Unsubscribed > Sent.",
    )
    field_mapping: FieldMapping = FieldMapping()
    activity: ActivitySettings = ActivitySettings()
    campaign_hierarchy: CampaignHierarchy = CampaignHierarchy()
    sync: SyncSettings = SyncSettings()

    @property
    def attribution_window_days(self) -> int:
        return self.mailchimp.attribution_window_days

    @model_validator(mode="after")
    def _member_mapping_needs_members(self) -> SyncProfile:
        if self.mode == "campaign_totals" and self.field_mapping.campaign_member:
            raise ValueError(
                "field_mapping.campaign_member is set but mode campaign_totals writes no CampaignMembers; "
                "remove it or use mode campaign"
            )
        if self.mode == "campaign_totals" and self.matching.sync_opt_out:
            raise ValueError(
                "matching.sync_opt_out is set but mode campaign_totals matches no Leads/Contacts to mark; "
                "remove it or use a mode that matches people (campaign, activity, campaign_and_activity, notes)"
            )
        return self


# The top-level keys of a profile, as a sync profile YAML or a CampaignSync component's attributes hold them.
PROFILE_SECTIONS: tuple[str, ...] = tuple(SyncProfile.model_fields)


def default_profile() -> SyncProfile:
    return SyncProfile()


PROFILE_ENV = "CAMPAIGN_PIPELINE_PROFILE"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def active_profile_path() -> Path | None:
    """CAMPAIGN_PIPELINE_PROFILE, else sync_profile.yaml at the project root, else none (built-in defaults)."""
    configured = os.environ.get(PROFILE_ENV, "").strip()
    if configured:
        return Path(configured)
    example = PROJECT_ROOT / "sync_profile.yaml"
    return example if example.exists() else None


def load_active_profile() -> SyncProfile:
    path = active_profile_path()
    return load_profile(path) if path else default_profile()


class _ProfileLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: a date stays text until the field's own validation, so an impossible one
    (`2026-13-01`) is reported naming its setting instead of failing inside the YAML parser."""


_ProfileLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_profile(path: str | Path) -> SyncProfile:
    """Load and validate a profile YAML; errors name the file and each offending field."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_ProfileLoader) or {}
    except FileNotFoundError as exc:
        raise ProfileError(f"sync profile {path} does not exist (set CAMPAIGN_PIPELINE_PROFILE to its path)") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"sync profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"sync profile {path} must be a mapping of settings, got {type(raw).__name__}")
    return validate_profile(raw, f"sync profile {path}")


def validate_profile(raw: dict[str, Any], where: str) -> SyncProfile:
    """A profile from its settings (a file's or a component's); errors start with `where`."""
    try:
        return SyncProfile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe_error(err) for err in exc.errors())
        raise ProfileError(f"{where} is invalid: {problems}") from exc


def _describe_error(err: Any) -> str:
    location = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error":
        # pydantic already lists the allowed values ("Input should be 'a', 'b' or 'c'").
        return f"{location}: {message} (got {err.get('input')!r})"
    if err["type"] == "extra_forbidden":
        return f"{location}: {unknown_setting_hint(tuple(err['loc']))}"
    return f"{location}: {message}"


def allowed_settings(parent: tuple[Any, ...]) -> list[str]:
    """The setting names allowed at `parent` (a path of field names into SyncProfile), [] when not a section."""
    model: Any = SyncProfile
    for part in parent:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def unknown_setting_hint(loc: tuple[Any, ...]) -> str:
    """'unknown setting' plus the allowed names at that level and, for a likely typo, the closest one."""
    allowed = allowed_settings(loc[:-1])
    if not allowed:
        return "unknown setting"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    suggestion = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown setting; {suggestion}allowed: {', '.join(allowed)}"
