"""CampaignSync: one sync profile as a Dagster component, so one deployment can run several profiles.

An instance lives in `campaign_pipeline/defs/<folder>/defs.yaml`; its attributes are a sync profile's settings
(the keys of sync_profile.yaml) plus a `name`. Each named instance gets its own asset key prefix and group,
campaign partitions, job, sensor and schedule, and its own rows in the sync ledger; all instances share the one
Postgres, the resources and the landed Mailchimp data. The instance without a name is the classic deployment
(sync_profile.yaml, or CAMPAIGN_PIPELINE_PROFILE) with today's unprefixed names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import model_validator

from campaign_pipeline.profile import PROFILE_SECTIONS, ProfileError, SyncProfile, load_profile, validate_profile

# A name becomes an asset key prefix, a group, and part of job, sensor, schedule and partitions names.
INSTANCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# While set (collected_profiles), every instance built adds its name (None for the default one) and its profile.
_collected: ContextVar[dict[str | None, SyncProfile] | None] = ContextVar("campaign_sync_profiles", default=None)


@contextmanager
def collected_profiles() -> Iterator[dict[str | None, SyncProfile]]:
    """The profiles of the CampaignSync instances built inside the block, by instance name: what a command that
    targets one instance (`campaign-pipeline backfill --instance`) picks from, as the deployment loaded them."""
    found: dict[str | None, SyncProfile] = {}
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


class CampaignSyncScaffolder(dg.Scaffolder):
    """`dg scaffold defs campaign_pipeline.components.CampaignSync <folder>`: a named profile with the defaults."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = re.sub(r"[^a-z0-9_]", "_", request.target_path.name.lower()).lstrip("_0123456789") or "profile"
        scaffold_component(
            request,
            {
                "name": name,
                "mode": "campaign",
                "mailchimp": {"list_id": None, "attribution_window_days": 30},
                "matching": {"create_leads_for_unmatched": False},
                "field_mapping": {"campaign": {"emails_sent": "NumberSent"}},
            },
        )


@dg.scaffold_with(CampaignSyncScaffolder)
class CampaignSync(dg.Component, dg.Resolvable, dg.Model):
    """One sync profile: Mailchimp campaigns of one audience into Salesforce in one mode.

    Set the profile inline (the same keys as sync_profile.yaml), or `profile_file` (a sync profile YAML,
    relative to this defs.yaml), or `active_profile: true` (CAMPAIGN_PIPELINE_PROFILE, else sync_profile.yaml
    at the project root, else the built-in defaults).
    """

    name: str | None = None
    profile_file: str | None = None
    active_profile: bool = False
    mode: str | None = None
    mailchimp: dict[str, Any] | None = None
    status_rule: str | None = None
    matching: dict[str, Any] | None = None
    field_mapping: dict[str, Any] | None = None
    activity: dict[str, Any] | None = None
    campaign_hierarchy: dict[str, Any] | None = None
    sync: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CampaignSync:
        if self.name is not None and not INSTANCE_NAME.match(self.name):
            raise ValueError(
                f"name {self.name!r} must be lower-case letters, digits and underscores, starting with a letter "
                "(at most 40): it becomes the asset key prefix and part of the job and sensor names"
            )
        sources = [bool(self.inline_settings()), self.profile_file is not None, self.active_profile]
        if sum(sources) > 1:
            raise ValueError("give the profile one way: inline settings, profile_file, or active_profile: true")
        return self

    def inline_settings(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in PROFILE_SECTIONS if getattr(self, key) is not None}

    def sync_profile(self, defs_folder: Path | None = None) -> SyncProfile:
        """The validated profile; errors name this instance and each offending setting."""
        if self.active_profile:
            from campaign_pipeline.definitions import load_active_profile

            return load_active_profile()
        if self.profile_file is not None:
            path = Path(self.profile_file)
            return load_profile(path if path.is_absolute() or defs_folder is None else defs_folder / path)
        where = f"sync profile component {self.name or '(unnamed)'}" + (f" in {defs_folder}" if defs_folder else "")
        return validate_profile(self.inline_settings(), where)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from campaign_pipeline.definitions import build_definitions

        try:
            profile = self.sync_profile(context.path)
        except ProfileError as exc:
            raise ProfileError(f"{exc} (component defined in {context.path})") from exc
        collecting = _collected.get()
        if collecting is not None:
            collecting[self.name] = profile
        return build_definitions(profile, instance=self.name)
