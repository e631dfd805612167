"""The mode table is the one place modes are described: Definitions, the push and the engine follow it."""

from __future__ import annotations

import typing
from pathlib import Path

import dagster as dg
import pytest

from campaign_pipeline import modes
from campaign_pipeline.definitions import build_definitions
from campaign_pipeline.profile import SyncProfile, default_profile

ENGINE_DIR = Path(modes.__file__).parent / "salesforce" / "engine"


def test_every_mode_of_the_profile_literal_has_a_spec() -> None:
    field_type = SyncProfile.model_fields["mode"].annotation
    assert typing.get_args(field_type) == modes.SYNC_MODES
    assert set(modes.MODES) == set(modes.SYNC_MODES)
    with pytest.raises(ValueError, match="mode"):
        SyncProfile.model_validate({"mode": "everything"})


@pytest.mark.parametrize("mode", modes.SYNC_MODES)
def test_definitions_follow_the_table(mode: str) -> None:
    spec = modes.mode_spec(mode)
    profile = default_profile().model_copy(update={"mode": mode})
    graph = build_definitions(profile).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert ("campaign_content" in keys) == spec.needs_content
    assert ("salesforce_matches" in keys) == spec.matches_people
    # The mode's own assets plus the options the profile turns on (the campaign hierarchy is on by default).
    names = modes.desired_asset_names(profile)
    assert set(spec.desired_assets) <= set(names)
    for name in names:
        parents = {parent.to_user_string() for parent in graph.get(dg.AssetKey(name)).parent_keys}
        assert parents == set(modes.DESIRED_ASSETS[name].inputs), name
    push_parents = {parent.to_user_string() for parent in graph.get(dg.AssetKey("salesforce_sync")).parent_keys}
    assert push_parents == set(names)


def test_push_order_puts_parents_first() -> None:
    options = {"matching": {"sync_opt_out": True}, "campaign_hierarchy": {"regular_parent": "Newsletters"}}
    for spec in modes.MODES.values():
        for settings in ({}, options):
            if spec.name == "campaign_totals" and settings:
                settings = {"campaign_hierarchy": options["campaign_hierarchy"]}
            profile = SyncProfile.model_validate({"mode": spec.name, **settings})
            kinds = [step.kind(profile) for step in modes.record_steps(profile)]
            written: set[str] = set()
            for kind in kinds:
                assert kind.parent_kind is None or kind.parent_kind in written, (spec.name, kind.name)
                written.add(kind.name)


def test_tasks_point_at_the_campaign_only_where_the_mode_writes_one() -> None:
    for spec in modes.MODES.values():
        if "sf_tasks" not in spec.desired_assets:
            continue
        kind = modes.task_kind(SyncProfile(mode=spec.name))
        assert (kind.parent_field == "WhatId") == ("sf_campaign" in spec.desired_assets) == spec.tasks_on_campaign


def test_the_engine_knows_record_kinds_never_modes() -> None:
    for path in ENGINE_DIR.glob("*.py"):
        source = path.read_text()
        assert ".mode" not in source and "SyncProfile" not in source and "campaign_pipeline.modes" not in source, path
