"""The Definitions as Dagster loads them: the graph per mode, descriptions, automation, and batched backfills."""

import dagster as dg
import pytest

from campaign_pipeline.definitions import SYNC_JOB_NAME, build_definitions, defs
from campaign_pipeline.profile import SYNC_MODES, default_profile
from campaign_pipeline.storage import database
from campaign_pipeline.storage.frames import read_frame

MAILCHIMP_AND_METRICS = {
    "preflight",
    "raw_email_events",
    "campaign_recipients",
    "mailchimp_campaign_report",
    "member_statuses",
    "campaign_totals",
}
# What each mode adds on the Salesforce side; the graph shows nothing the mode does not use.
SALESFORCE_BY_MODE = {
    "campaign": {
        "salesforce_matches",
        "unmatched_members",
        "sf_parent_campaigns",
        "sf_campaign",
        "sf_campaign_members",
        "salesforce_sync",
    },
    "campaign_totals": {"sf_parent_campaigns", "sf_campaign", "salesforce_sync"},
    "activity": {"salesforce_matches", "unmatched_members", "sf_tasks", "salesforce_sync"},
    "campaign_and_activity": {
        "salesforce_matches",
        "unmatched_members",
        "sf_parent_campaigns",
        "sf_campaign",
        "sf_campaign_members",
        "sf_tasks",
        "salesforce_sync",
    },
    "notes": {
        "campaign_content",
        "salesforce_matches",
        "unmatched_members",
        "sf_notes",
        "sf_attachments",
        "salesforce_sync",
    },
}


# Edges shared by every mode, then what each mode adds: a change to the graph must change this snapshot.
COMMON_EDGES = {
    # The checks run first: nothing pages Mailchimp before they pass.
    "raw_email_events": {"preflight"},
    "mailchimp_campaign_report": {"preflight"},
    "member_statuses": {"campaign_recipients", "raw_email_events"},
    "campaign_totals": {"mailchimp_campaign_report", "member_statuses"},
    "campaign_recipients": {"mailchimp_campaign_report"},
}
PEOPLE_EDGES = {"salesforce_matches": {"member_statuses"}, "unmatched_members": {"member_statuses"}}
# The campaign hierarchy (automation workflows' parent Campaigns) is on by default wherever Campaigns are written.
CAMPAIGN_EDGES = {
    "sf_campaign": {"campaign_totals", "mailchimp_campaign_report"},
    "sf_parent_campaigns": {"mailchimp_campaign_report"},
}
MEMBER_EDGES = {"sf_campaign_members": {"member_statuses", "salesforce_matches"}}
TASK_EDGES = {"sf_tasks": {"mailchimp_campaign_report", "member_statuses", "raw_email_events", "salesforce_matches"}}
EDGES_BY_MODE = {
    "campaign": {
        **PEOPLE_EDGES,
        **CAMPAIGN_EDGES,
        **MEMBER_EDGES,
        "salesforce_sync": {"sf_parent_campaigns", "sf_campaign", "sf_campaign_members"},
    },
    "campaign_totals": {**CAMPAIGN_EDGES, "salesforce_sync": {"sf_parent_campaigns", "sf_campaign"}},
    "activity": {**PEOPLE_EDGES, **TASK_EDGES, "salesforce_sync": {"sf_tasks"}},
    "campaign_and_activity": {
        **PEOPLE_EDGES,
        **CAMPAIGN_EDGES,
        **MEMBER_EDGES,
        **TASK_EDGES,
        "salesforce_sync": {"sf_parent_campaigns", "sf_campaign", "sf_campaign_members", "sf_tasks"},
    },
    "notes": {
        **PEOPLE_EDGES,
        "sf_notes": {"mailchimp_campaign_report", "member_statuses", "raw_email_events", "salesforce_matches"},
        "campaign_content": {"preflight"},
        "sf_attachments": {"campaign_content", "mailchimp_campaign_report", "member_statuses", "salesforce_matches"},
        "salesforce_sync": {"sf_attachments", "sf_notes"},
    },
}


def definitions_for(mode: str) -> dg.Definitions:
    return build_definitions(default_profile().model_copy(update={"mode": mode}))


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_graph_holds_exactly_what_the_mode_uses(mode):
    graph = definitions_for(mode).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == MAILCHIMP_AND_METRICS | SALESFORCE_BY_MODE[mode]


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_dependency_edges_match_the_snapshot(mode):
    graph = definitions_for(mode).resolve_asset_graph()
    edges = {
        key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert {k: v for k, v in edges.items() if v} == {**COMMON_EDGES, **EDGES_BY_MODE[mode]}


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_every_asset_is_described_grouped_and_partitioned_per_campaign(mode):
    graph = definitions_for(mode).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        assert node.group_name in {"preflight", "mailchimp", "metrics", "salesforce"}, key
        assert node.partitions_def is not None and node.partitions_def.name == "mailchimp_campaigns", key
        assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run > 1, key


def test_loaded_definitions_have_the_job_sensor_schedule_and_checks():
    repo = defs.get_repository_def()
    assert repo.has_job(SYNC_JOB_NAME)
    assert {s.name for s in repo.sensor_defs} == {"mailchimp_new_sends_sensor"}
    assert {s.name for s in repo.schedule_defs} == {"mailchimp_resync_schedule"}
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert "totals_match_mailchimp_report" in checks


@pytest.mark.slow
def test_a_backfill_batch_syncs_several_campaigns_in_one_run(
    dagster_instance, fresh_database_url, tmp_path, monkeypatch
):
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    monkeypatch.setenv(database.DATA_DIR_ENV, str(tmp_path))
    campaign_defs = definitions_for("campaign")
    mailchimp = campaign_defs.resources["mailchimp"]
    keys = sorted(c.id for c in mailchimp.list_sent_campaigns())[:3]
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", keys)
    ordered = [k for k in dagster_instance.get_dynamic_partitions("mailchimp_campaigns") if k in keys]
    job = campaign_defs.resolve_job_def(SYNC_JOB_NAME)
    result = job.execute_in_process(
        instance=dagster_instance,
        tags={"dagster/asset_partition_range_start": ordered[0], "dagster/asset_partition_range_end": ordered[-1]},
    )
    assert result.success
    engine = database.get_engine()
    totals = read_frame(engine, "asset_campaign_totals", keys)
    assert sorted(totals["campaign_id"]) == keys
    members = read_frame(engine, "asset_sf_campaign_members", [keys[1]])
    assert len(members) > 0 and set(members["campaign_id"]) == {keys[1]}
    assert dagster_instance.get_runs_count() == 1


def test_the_job_says_whether_it_reads_and_writes_sandboxes_or_live_systems(monkeypatch):
    for name in ("MAILCHIMP_API_KEY", "SALESFORCE_USERNAME", "SALESFORCE_INSTANCE_URL", "SALESFORCE_SESSION_ID"):
        monkeypatch.delenv(name, raising=False)
    sandbox_job = definitions_for("campaign").resolve_job_def(SYNC_JOB_NAME)
    assert "Mailchimp source: SANDBOX" in sandbox_job.description
    assert "Salesforce target: SANDBOX org" in sandbox_job.description

    monkeypatch.setenv("MAILCHIMP_API_KEY", "0123456789abcdef-us21")
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://example.my.salesforce.com")
    monkeypatch.setenv("SALESFORCE_SESSION_ID", "00Dsecret!token")
    live_job = definitions_for("campaign").resolve_job_def(SYNC_JOB_NAME)
    assert "Mailchimp source: Mailchimp API" in live_job.description
    assert "Salesforce target: live org" in live_job.description
    assert "0123456789abcdef" not in live_job.description and "secret" not in live_job.description


def test_runs_dagster_builds_itself_run_their_steps_in_one_process_like_the_sync_job():
    # A UI "Materialize" or a backfill over a partition range runs the implicit asset job: one subprocess per step
    # there would re-import Dagster and rebuild these Definitions for each of the ten steps.
    implicit = defs.resolve_implicit_global_asset_job_def()
    assert implicit.executor_def.name == dg.in_process_executor.name
    assert defs.resolve_job_def(SYNC_JOB_NAME).executor_def.name == dg.in_process_executor.name
