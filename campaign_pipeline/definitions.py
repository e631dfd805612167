"""The Definitions object, built from the sync profile: the assets its mode uses, the job, sensor and schedule."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, cast

import dagster as dg

from campaign_pipeline.core.errors import exception_chain
from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS, mailchimp_campaigns

# Where the profile comes from lives with the profile, so `campaign-pipeline check` reads it without building these.
from campaign_pipeline.profile import (  # noqa: F401 (re-exported: the names callers know)
    PROFILE_ENV,
    PROJECT_ROOT,
    ProfileError,
    SyncProfile,
    active_profile_path,
    load_active_profile,
)
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager

SYNC_JOB_NAME = "sync_campaign_job"


def build_definitions(profile: SyncProfile, instance: str | None = None) -> dg.Definitions:
    """Everything Dagster shows for one sync profile: only the assets its mode writes, its job, sensor, schedule.

    `instance` names the profile when a deployment has several (see components/): its assets then live under
    the key prefix `instance` in a group of that name, on campaign partitions of their own, with a job, sensor
    and schedule named after it. None keeps the classic single-profile names (sync_campaign_job, ...).
    """
    from campaign_pipeline.mailchimp.defs import build_mailchimp_sensors, mailchimp_assets
    from campaign_pipeline.metrics.assets import build_metrics_asset_checks, metrics_assets
    from campaign_pipeline.preflight import build_preflight_asset
    from campaign_pipeline.salesforce.defs import salesforce_assets

    # The preflight checks come first: the Mailchimp assets wait for them (campaign_asset(after_preflight=True)).
    assets = [
        build_preflight_asset(profile),
        *mailchimp_assets(profile),
        *metrics_assets(profile),
        *salesforce_assets(profile),
    ]
    partitions = mailchimp_campaigns
    if instance is not None:
        partitions = dg.DynamicPartitionsDefinition(name=instance_partitions_name(instance))
    # Partitioned checks must share their asset's partitions, so they are built on the profile's own.
    checks = build_metrics_asset_checks(partitions)
    if instance is not None:
        assets, checks = _as_instance(assets, checks, instance, partitions)
    resources = shared_resources(filter_bots=profile.mailchimp.filter_bots)
    # Said where a user looks first: whether this deployment reads and writes real systems or the sandboxes.
    source_and_target = f"{resources['mailchimp'].source_description}. {resources['salesforce'].describe_target()}."
    sync_job = dg.define_asset_job(
        sync_job_name(instance),
        selection=dg.AssetSelection.assets(*assets),
        # One process per run, not one per step: a step subprocess re-imports Dagster and rebuilds these
        # Definitions (seconds each, ten steps in a row), which made a no-op UI run minutes instead of seconds.
        # The steps are a chain anyway and the pools still bound Mailchimp and Salesforce across runs: the
        # in-process executor claims pool slots per step like the multiprocess one
        # (dagster/_core/executor/in_process.py enters InstanceConcurrencyContext; active.py claims per step).
        executor_def=dg.in_process_executor,
        description=(
            f"Sync one Mailchimp campaign into Salesforce in mode '{profile.mode}': land new activity, compute "
            f"statuses and totals, match people, and write only what changed. {source_and_target}"
            + (f" Sync profile '{instance}'." if instance is not None else "")
        ),
    )
    sensors, schedules = build_mailchimp_sensors(
        sync_job, profile, partitions_def=partitions, name_prefix=f"{instance}_" if instance is not None else ""
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[sync_job],
        sensors=sensors,
        schedules=schedules,
        resources=resources,
        # The same for the runs Dagster builds itself (Materialize in the UI, backfills over a partition range).
        executor=dg.in_process_executor,
    )


def sync_job_name(instance: str | None = None) -> str:
    return SYNC_JOB_NAME if instance is None else f"{instance}_{SYNC_JOB_NAME}"


def instance_partitions_name(instance: str) -> str:
    return f"{instance}_{MAILCHIMP_CAMPAIGNS_PARTITIONS}"


# Environment variables that choose or configure the resources (credentials, database, sandbox state).
_RESOURCE_ENV_PREFIXES = ("MAILCHIMP_", "SALESFORCE_", "CAMPAIGN_PIPELINE_")


def shared_resources(filter_bots: bool = False) -> dict[str, Any]:
    """The resources every sync profile of the deployment shares. Only `filter_bots` comes from the profiles
    (landed events are shared, so all profiles must agree on it); the same environment gives the very same
    objects, as Dagster merges several profiles' Definitions only when their resources are identical."""
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_RESOURCE_ENV_PREFIXES)))
    return {**_resources_for(environment), **_mailchimp_resources_for(environment, filter_bots)}


@functools.lru_cache(maxsize=8)
def _resources_for(environment: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from campaign_pipeline.deployment import choose_deployment
    from campaign_pipeline.metrics.assets import metrics_resources
    from campaign_pipeline.stores import store_resources

    # Live or sandbox is decided here, once, by campaign_pipeline.deployment's rule.
    return {
        "io_manager": PostgresPandasIOManager(),
        **metrics_resources(),
        "salesforce": choose_deployment().salesforce,
        **store_resources(),
    }


@functools.lru_cache(maxsize=8)
def _mailchimp_resources_for(environment: tuple[tuple[str, str], ...], filter_bots: bool) -> dict[str, Any]:
    from campaign_pipeline.deployment import choose_deployment

    return {"mailchimp": choose_deployment(filter_bots=filter_bots).mailchimp}


def _as_instance(
    assets: list[dg.AssetsDefinition],
    checks: list[dg.AssetChecksDefinition],
    instance: str,
    partitions: dg.DynamicPartitionsDefinition,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The same assets and checks under the key prefix `instance`, in the group `instance`, on `partitions`.

    Keys are replaced in one mapping, so every dependency between the profile's assets follows; the IO
    manager names tables after the whole key, so a profile's frames never mix with another's. Ops are renamed
    `<instance>__<op>` (as Dagster names a prefixed asset's op), since op names are unique in a code location.
    """
    renamed = {key: dg.AssetKey([instance, *key.path]) for asset in assets for key in asset.keys}
    prefixed = [
        _with_op_prefix(
            asset.with_attributes(asset_key_replacements=renamed).map_asset_specs(
                lambda spec: spec.replace_attributes(partitions_def=partitions, group_name=instance)
            ),
            instance,
            partitions,
        )
        for asset in assets
    ]
    prefixed_checks = [
        cast(dg.AssetChecksDefinition, _with_op_prefix(check.with_attributes(asset_key_replacements=renamed), instance))
        for check in checks
    ]
    return prefixed, prefixed_checks


def _with_op_prefix(
    asset: dg.AssetsDefinition, instance: str, partitions: dg.DynamicPartitionsDefinition | None = None
) -> dg.AssetsDefinition:
    attributes = asset.get_attributes_dict()
    node = attributes["node_def"]
    attributes["node_def"] = node.with_replaced_properties(name=f"{instance}__{node.name}")
    if partitions is not None and attributes.get("check_specs_by_output_name"):
        # A partitioned check inside an asset (salesforce_sync's no_failed_records) follows its asset's partitions.
        attributes["check_specs_by_output_name"] = {
            name: spec._replace(partitions_def=partitions) if spec.partitions_def is not None else spec
            for name, spec in attributes["check_specs_by_output_name"].items()
        }
    return type(asset).dagster_internal_init(**attributes)


def build_deployment(project_module_dir: Path | None = None) -> dg.Definitions:
    """Every sync profile of the deployment: the CampaignSync instances under campaign_pipeline/defs/ (the
    `default` one is the classic sync_profile.yaml), merged into one Definitions."""
    try:
        return dg.load_from_defs_folder(path_within_project=project_module_dir or Path(__file__).resolve().parent)
    except Exception as exc:  # the component tree wraps the merge error in its own
        if any("different resources with same key 'mailchimp'" in str(e) for e in exception_chain(exc)):
            raise ProfileError(
                "the sync profiles under campaign_pipeline/defs/ disagree on mailchimp.filter_bots: landed Mailchimp "
                "events are shared by every profile of a deployment, so set it the same in all of them"
            ) from exc
        raise


def deployment_profiles(project_module_dir: Path | None = None) -> tuple[dg.Definitions, dict[str | None, SyncProfile]]:
    """The deployment's Definitions and the profile of each of its CampaignSync instances, by name (None: the
    default instance, with the classic unprefixed names)."""
    from campaign_pipeline.components.campaign_sync import collected_profiles

    with collected_profiles() as profiles:
        loaded = build_deployment(project_module_dir)
    return loaded, dict(profiles)


defs = build_deployment()
