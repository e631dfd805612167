"""Several sync profiles in one deployment: CampaignSync component instances loaded from a defs folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from campaign_pipeline.components import CampaignSync
from campaign_pipeline.core.errors import exception_chain
from campaign_pipeline.definitions import SYNC_JOB_NAME, build_definitions, defs, instance_partitions_name
from campaign_pipeline.profile import ProfileError, default_profile
from campaign_pipeline.storage import database

REPO_ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN_PROFILE = """\
type: campaign_pipeline.components.CampaignSync
attributes:
  name: newsletter_members
  mode: campaign
  field_mapping:
    campaign:
      emails_sent: NumberSent
"""
NOTES_PROFILE = """\
type: campaign_pipeline.components.CampaignSync
attributes:
  name: newsletter_notes
  mode: notes
"""


def write_project(root: Path, profiles: dict[str, str]) -> Path:
    """A dg project with one folder per profile under <package>/defs, and a definitions.py loading them.
    The package is named after the test's folder: Python caches imported modules by name."""
    package = package_name(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{package}"\n'
    )
    defs_folder = root / package / "defs"
    defs_folder.mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (defs_folder / "__init__.py").write_text("")
    for folder, text in profiles.items():
        (defs_folder / folder).mkdir()
        (defs_folder / folder / "defs.yaml").write_text(text)
    (root / package / "definitions.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            import dagster as dg

            defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )
    return root / package / "definitions.py"


def package_name(root: Path) -> str:
    return "profiles_" + "".join(c if c.isalnum() else "_" for c in root.name)


def load_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.syspath_prepend(str(root))
    return dg.load_from_defs_folder(path_within_project=root / package_name(root))


def test_the_classic_profile_is_the_default_instance_with_unprefixed_names():
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert "salesforce_sync" in keys and all("/" not in key for key in keys)
    assert {job.name for job in defs.jobs} == {SYNC_JOB_NAME}
    single = build_definitions(default_profile())
    assert keys == {key.to_user_string() for key in single.resolve_all_asset_keys()}


def test_two_instances_get_their_own_prefix_group_partitions_job_sensor_and_schedule(tmp_path, monkeypatch):
    write_project(tmp_path, {"members": CAMPAIGN_PROFILE, "notes": NOTES_PROFILE})
    loaded = load_project(tmp_path, monkeypatch)
    graph = loaded.resolve_asset_graph()
    for name, mode_only in (("newsletter_members", "sf_campaign_members"), ("newsletter_notes", "sf_notes")):
        keys = {key for key in graph.get_all_asset_keys() if key.path[0] == name}
        assert dg.AssetKey([name, mode_only]) in keys
        for key in keys:
            node = graph.get(key)
            assert node.group_name == name
            assert node.partitions_def.name == instance_partitions_name(name)
            # Dependencies stay inside the profile.
            assert all(parent.path[0] == name for parent in node.parent_keys), key
        job = loaded.resolve_job_def(f"{name}_{SYNC_JOB_NAME}")
        assert {key for key in job.asset_layer.selected_asset_keys} == keys
        assert loaded.resolve_sensor_def(f"{name}_mailchimp_new_sends_sensor")
        assert loaded.resolve_schedule_def(f"{name}_mailchimp_resync_schedule")
    assert dg.AssetKey(["newsletter_members", "sf_notes"]) not in graph.get_all_asset_keys()
    checks = {key for key in graph.asset_check_keys}
    assert {check.asset_key.path[0] for check in checks} == {"newsletter_members", "newsletter_notes"}


def test_dagster_definitions_validate_passes_for_two_instances(tmp_path):
    definitions_file = write_project(tmp_path, {"members": CAMPAIGN_PROFILE, "notes": NOTES_PROFILE})
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f", str(definitions_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_an_invalid_profile_names_the_instance_and_the_setting(tmp_path, monkeypatch):
    bad = NOTES_PROFILE.replace("mode: notes", "mode: note")
    write_project(tmp_path, {"notes": bad})
    with pytest.raises(Exception) as raised:
        load_project(tmp_path, monkeypatch)
    message = "".join(str(e) for e in exception_chain(raised.value))
    assert "newsletter_notes" in message and "mode" in message and "'notes'" in message


def test_a_name_that_cannot_be_a_key_prefix_is_refused():
    with pytest.raises(ValueError, match="lower-case letters"):
        CampaignSync(name="News Letter", mode="campaign")
    with pytest.raises(ValueError, match="one way"):
        CampaignSync(name="nl", mode="campaign", profile_file="x.yaml")


def test_profiles_that_disagree_on_bot_filtering_are_refused(tmp_path, monkeypatch):
    filtered = NOTES_PROFILE + "  mailchimp:\n    filter_bots: true\n"
    write_project(tmp_path, {"members": CAMPAIGN_PROFILE, "notes": filtered})
    monkeypatch.syspath_prepend(str(tmp_path))
    from campaign_pipeline import definitions

    with pytest.raises(ProfileError, match="filter_bots"):
        definitions.build_deployment(tmp_path / package_name(tmp_path))


@pytest.mark.slow
def test_two_instances_sync_one_audience_end_to_end_with_their_own_partitions_and_ledger_rows(
    dagster_instance, fresh_database_url, tmp_path, monkeypatch
):
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    monkeypatch.setenv(database.DATA_DIR_ENV, str(tmp_path / "data"))
    write_project(tmp_path / "project", {"members": CAMPAIGN_PROFILE, "notes": NOTES_PROFILE})
    loaded = load_project(tmp_path / "project", monkeypatch)
    mailchimp = loaded.resources["mailchimp"]
    campaign_id = sorted(c.id for c in mailchimp.list_sent_campaigns() if c.type == "regular")[0]
    created: dict[str, dict[str, int]] = {}
    for name in ("newsletter_members", "newsletter_notes"):
        dagster_instance.add_dynamic_partitions(instance_partitions_name(name), [campaign_id])
    try:
        for attempt in ("first", "again"):
            for name in ("newsletter_members", "newsletter_notes"):
                job = loaded.resolve_job_def(f"{name}_{SYNC_JOB_NAME}")
                result = job.execute_in_process(instance=dagster_instance, partition_key=campaign_id)
                assert result.success, name
                sync = result.asset_materializations_for_node(f"{name}__salesforce_sync")[0].metadata
                created.setdefault(name, {})[attempt] = sync["created"].value + sync["updated"].value
        assert created["newsletter_members"]["first"] > 0 and created["newsletter_notes"]["first"] > 0
        assert created["newsletter_members"]["again"] == created["newsletter_notes"]["again"] == 0
        # Each profile's partition set holds only what was added to it; the classic one is untouched.
        assert dagster_instance.get_dynamic_partitions("mailchimp_campaigns") == []
        engine = database.get_engine()
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT scope, object_kind, count(*) FROM campaign_pipeline.sync_ledger GROUP BY 1, 2")
            ).all()
        kinds = {}
        for scope, kind, count in rows:
            kinds.setdefault(scope, set()).add(kind)
            assert count > 0
        assert set(kinds) == {"newsletter_members", "newsletter_notes"}
        assert {"campaign", "campaign_member"} <= kinds["newsletter_members"]
        assert "content_note" not in kinds["newsletter_members"]
        # Mode notes writes Enhanced Notes and Files by default.
        assert {"content_note", "content_note_link", "email_file"} <= kinds["newsletter_notes"]
        assert "campaign_member" not in kinds["newsletter_notes"]
    finally:
        for name in ("newsletter_members", "newsletter_notes"):
            dagster_instance.delete_dynamic_partition(instance_partitions_name(name), campaign_id)


def test_dg_scaffolds_a_named_profile_that_loads(tmp_path, monkeypatch):
    write_project(tmp_path, {"members": CAMPAIGN_PROFILE})
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dg"),
            "scaffold",
            "defs",
            "campaign_pipeline.components.CampaignSync",
            "weekly_digest",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    scaffolded = tmp_path / package_name(tmp_path) / "defs" / "weekly_digest" / "defs.yaml"
    assert "name: weekly_digest" in scaffolded.read_text()
    loaded = load_project(tmp_path, monkeypatch)
    assert loaded.resolve_job_def(f"weekly_digest_{SYNC_JOB_NAME}")
