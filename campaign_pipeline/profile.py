"""The sync profile: which mode, which audience, matching policy and field mapping, validated at load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SyncMode = Literal["campaign", "activity", "campaign_and_activity", "notes", "campaign_totals"]
SYNC_MODES: tuple[str, ...] = ("campaign", "activity", "campaign_and_activity", "notes", "campaign_totals")


class ProfileError(ValueError):
    """A sync profile that cannot be used; the message names the file, the field and what is allowed."""


class MailchimpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list_id: str | None = Field(
        default=None, description="Mailchimp audience (list) whose campaigns are synced; None = the account's only list."
    )
    attribution_window_days: int = Field(
        default=30, ge=0, le=365, description="Days after a send during which a campaign is re-synced."
    )


class SyncProfile(BaseModel):
    """Step 1 mode, step 2 audience, step 3 matching, step 4 field mapping. Extended by the Salesforce side."""

    model_config = ConfigDict(extra="forbid")

    mode: SyncMode = "campaign"
    mailchimp: MailchimpSettings = MailchimpSettings()
    status_rule: Literal["latest", "highest_rank"] = Field(
        default="latest",
        description="latest: status of the most recent event; highest_rank: Clicked > Opened > Bounced > Unsubscribed > Sent.",
    )

    @property
    def attribution_window_days(self) -> int:
        return self.mailchimp.attribution_window_days


def default_profile() -> SyncProfile:
    return SyncProfile()


def load_profile(path: str | Path) -> SyncProfile:
    """Load and validate a profile YAML; errors name the file and each offending field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ProfileError(f"sync profile {path} does not exist (set CAMPAIGN_PIPELINE_PROFILE to its path)") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"sync profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"sync profile {path} must be a mapping of settings, got {type(raw).__name__}")
    try:
        return SyncProfile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"sync profile {path} is invalid: {problems}") from exc
