"""Checks before any work: `campaign-pipeline check`, the preflight step of every run, and the demo's first stop."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from campaign_pipeline.cli import main
from campaign_pipeline.definitions import SYNC_JOB_NAME, build_definitions
from campaign_pipeline.preflight import PREFLIGHT_ASSET, mapped_fields, run_checks
from campaign_pipeline.profile import PROFILE_ENV, SyncProfile, load_profile
from campaign_pipeline.storage import database

TYPO_PROFILE = """\
mode: campaign
field_mapping:
  campaign:
    delivered: Emails_Delivred__c
"""


@pytest.fixture
def sandbox_env(fresh_database_url, tmp_path, monkeypatch):
    """The sandboxes on an empty database and data folder, as on a fresh machine."""
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    monkeypatch.setenv(database.DATA_DIR_ENV, str(tmp_path / "data"))
    for name in ("MAILCHIMP_API_KEY", "SALESFORCE_USERNAME", "SALESFORCE_INSTANCE_URL", "SALESFORCE_SESSION_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def profile_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_every_mapped_field_of_the_modes_objects_is_checked():
    profile = load_profile(Path(__file__).resolve().parents[1] / "sync_profile.yaml")
    fields = {(f.sobject, f.field) for f in mapped_fields(profile)}
    assert ("Campaign", "Emails_Delivered__c") in fields and ("Campaign", "Mailchimp_Campaign_Id__c") in fields
    assert ("CampaignMember", "Last_Clicked_URL__c") in fields
    assert not any(sobject == "Task" for sobject, _ in fields)  # mode campaign writes no Tasks
    totals = {f.sobject for f in mapped_fields(profile.model_copy(update={"mode": "campaign_totals"}))}
    assert totals == {"Campaign"}


def test_check_passes_on_the_sandboxes_and_names_each_step(sandbox_env, monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    for name in ("profile", "database", "mailchimp key", "mailchimp audience", "salesforce login"):
        assert f"ok    {name}" in result.output
    assert "salesforce fields        10 mapped fields present and writable" in result.output
    assert "Sent, Opened, Clicked, Bounced, Unsubscribed" in result.output
    assert result.output.strip().endswith("ready: every check passed")


def test_check_json_exits_non_zero_and_names_a_mapped_field_missing_in_the_org(sandbox_env, monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, str(profile_file(sandbox_env, TYPO_PROFILE)))
    result = CliRunner().invoke(main, ["check", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    failed = [check for check in report["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["salesforce fields"]
    assert "Campaign.Emails_Delivred__c (field_mapping.campaign.delivered) does not exist" in failed[0]["detail"]
    assert "did you mean Emails_Delivered__c?" in failed[0]["detail"]


def test_a_wrong_audience_lists_the_accounts_audiences(sandbox_env):
    profile = SyncProfile.model_validate({"mailchimp": {"list_id": "nosuchlist"}})
    results = run_checks(lambda: profile, stop_at_first_failure=True)
    assert not results[-1].ok and results[-1].name == "mailchimp audience"
    assert "'nosuchlist' is not an audience of this account" in results[-1].detail
    assert all(result.ok for result in results[:-1])


def test_a_run_with_a_bad_mapping_fails_at_its_first_step_before_mailchimp_is_paged(sandbox_env, dagster_instance):
    profile = load_profile(profile_file(sandbox_env, TYPO_PROFILE))
    defs = build_definitions(profile)
    mailchimp = defs.resources["mailchimp"]
    key = mailchimp.list_sent_campaigns()[0].id
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", [key])
    result = defs.resolve_job_def(SYNC_JOB_NAME).execute_in_process(
        partition_key=key, instance=dagster_instance, raise_on_error=False
    )
    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    assert [event.step_key for event in failures] == [PREFLIGHT_ASSET]
    assert "Emails_Delivred__c" in failures[0].step_failure_data.error.message
    # No step that pages Mailchimp (or anything else) started: the preflight's ping and audience list were all.
    assert {event.step_key for event in result.all_events if event.is_step_start} == {PREFLIGHT_ASSET}


def test_demo_stops_at_the_first_configuration_error_in_one_line(sandbox_env, monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, str(profile_file(sandbox_env, TYPO_PROFILE)))
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Campaign.Emails_Delivred__c" in errors[0], result.output
    assert "syncing" not in result.output  # no campaign run started


def test_a_run_says_whose_state_it_uses_and_refuses_a_partition_of_another_account(sandbox_env, dagster_instance):
    from campaign_pipeline.mailchimp.ownership import PartitionOwners

    defs = build_definitions(SyncProfile())
    mailchimp = defs.resources["mailchimp"]
    own, foreign = (c.id for c in mailchimp.list_sent_campaigns()[:2])
    PartitionOwners(database.get_engine()).record([foreign], "mailchimp:acct-live-1")
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", [own, foreign])
    job = defs.resolve_job_def(SYNC_JOB_NAME).get_subset(asset_selection={dg.AssetKey(PREFLIGHT_ASSET)})
    ok = job.execute_in_process(partition_key=own, instance=dagster_instance)
    (materialization,) = ok.asset_materializations_for_node(PREFLIGHT_ASSET)
    assert materialization.metadata["source"].value == "mailchimp:sandbox"
    assert materialization.metadata["target"].value == "salesforce:sandbox"
    assert PartitionOwners(database.get_engine()).owners([own]) == {own: "mailchimp:sandbox"}  # claimed
    refused = job.execute_in_process(partition_key=foreign, instance=dagster_instance, raise_on_error=False)
    assert not refused.success
    (failure,) = [event for event in refused.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "mailchimp:acct-live-1" in message and "campaign-pipeline sandbox reset" in message
