"""The Definitions object, built from the sync profile: the assets its mode uses, the job, sensor and schedule."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from campaign_pipeline.profile import SyncProfile, default_profile, load_profile
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager

PROFILE_ENV = "CAMPAIGN_PIPELINE_PROFILE"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SYNC_JOB_NAME = "sync_campaign_job"


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


def build_definitions(profile: SyncProfile) -> dg.Definitions:
    """Everything Dagster shows, for one sync profile: only the assets its mode writes."""
    from campaign_pipeline.mailchimp.defs import build_mailchimp_sensors, mailchimp_assets, mailchimp_resources
    from campaign_pipeline.metrics.assets import metrics_asset_checks, metrics_assets, metrics_resources
    from campaign_pipeline.salesforce.defs import salesforce_assets, salesforce_resources

    assets = [*mailchimp_assets(profile), *metrics_assets, *salesforce_assets(profile)]
    mailchimp = mailchimp_resources(profile)
    salesforce = salesforce_resources(profile)
    resources = {
        "io_manager": PostgresPandasIOManager(),
        **mailchimp,
        **metrics_resources(profile),
        **salesforce,
    }
    # Said where a user looks first: whether this deployment reads and writes real systems or the sandboxes.
    source_and_target = f"{mailchimp['mailchimp'].source_description}. {salesforce['salesforce'].describe_target()}."
    sync_job = dg.define_asset_job(
        SYNC_JOB_NAME,
        selection=dg.AssetSelection.assets(*assets),
        description=(
            f"Sync one Mailchimp campaign into Salesforce in mode '{profile.mode}': land new activity, compute "
            f"statuses and totals, match people, and write only what changed. {source_and_target}"
        ),
    )
    sensors, schedules = build_mailchimp_sensors(sync_job, profile)
    return dg.Definitions(
        assets=assets,
        asset_checks=[*metrics_asset_checks],
        jobs=[sync_job],
        sensors=sensors,
        schedules=schedules,
        resources=resources,
    )


defs = build_definitions(load_active_profile())
