"""Through the Dagster UI: a dry run of one campaign shows what it would write and writes nothing, and a backfill of
three campaigns, batched into one run, shows each campaign its own counts, changes and check."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_pipeline.salesforce.ledger import LEDGER_TABLE
from campaign_pipeline.salesforce.sync_metadata import PREVIEW_TAG
from campaign_pipeline.storage.database import DATA_DIR_ENV, PIPELINE_SCHEMA, get_engine
from campaign_pipeline_tests.e2e.conftest import DagsterDev
from campaign_pipeline_tests.e2e.test_browser import JOB_NAME, _add_campaign_partition, _failure_messages, _wait_for_run

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

BACKFILL_SIZE = 3
# Records of the campaign itself: a preview must leave every one of them as it found it.
CAMPAIGN_SOBJECTS = ("Campaign", "CampaignMemberStatus", "CampaignMember")
BACKFILL_TIMEOUT_S = 420.0
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING"}
BACKFILL_QUERY = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill {
    status partitionNames
    runs(limit: 50) { id status tags { key value } }
} } }
"""
MATERIALIZATION_QUERY = """
query($partition: String!) { assetNodeOrError(assetKey: {path: ["salesforce_sync"]}) { ... on AssetNode {
    assetMaterializations(partitions: [$partition], limit: 1) { runId partition metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on TableMetadataEntry { table { records schema { columns { name } } } }
    } }
} } }
"""


def _screenshot(page, artifacts_dir: Path, name: str) -> None:
    path = artifacts_dir / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def _number(value: int) -> re.Pattern[str]:
    """A metadata cell showing ``value`` (the UI may group thousands)."""
    return re.compile(rf"^\s*({value}|{value:,})\s*$")


def _campaign_id(key: str) -> str:
    # Keys end in `_<campaign id>` (core.campaign_keys); a campaign is found by that suffix, never a fixed key.
    return key.rsplit("_", 1)[1]


@pytest.fixture(scope="module")
def campaign_keys(dagster_dev: DagsterDev) -> list[str]:
    """The sandbox account's sent regular campaigns as partitions, keyed and ordered as the new-sends sensor
    adds them (the sensor itself is off in a fresh instance; the runs are launched by clicking in the UI)."""
    from campaign_pipeline.definitions import load_active_profile
    from campaign_pipeline.deployment import choose_deployment
    from campaign_pipeline.mailchimp.sensors import sent_campaign_key

    dagster_dev.wait_for_code_location()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(dagster_dev.data_dir))
        patch.delenv("MAILCHIMP_API_KEY", raising=False)
        listed = choose_deployment().mailchimp.list_sent_campaigns(list_id=load_active_profile().mailchimp.list_id)
    keys = sorted(sent_campaign_key(c) for c in listed if c.sent_at_is_exact)
    # One campaign for the preview, a contiguous run of others for the backfill (so it batches into one run).
    assert len(keys) >= 1 + BACKFILL_SIZE, f"the sandbox lists too few sent regular campaigns: {keys}"
    for key in keys:
        _add_campaign_partition(dagster_dev, key)
    assert dagster_dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    return keys


@pytest.fixture(scope="module")
def pipeline_db(e2e_database_url: str) -> Iterator[sa.Engine]:
    """The database the webserver's runs write: the sandbox org and the sync ledger, read from the test."""
    yield get_engine(e2e_database_url)


def _ledger_rows(engine: sa.Engine, campaign_id: str) -> dict[str, int]:
    """last_result -> number of the campaign's ledger rows ({} before any real run made the table)."""
    if not sa.inspect(engine).has_table(LEDGER_TABLE, schema=PIPELINE_SCHEMA):
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f'SELECT last_result, count(*) FROM "{PIPELINE_SCHEMA}"."{LEDGER_TABLE}" '
                "WHERE campaign_id = :campaign GROUP BY last_result"
            ),
            {"campaign": campaign_id},
        )
        return {result: count for result, count in rows}


def _org_campaign_records(engine: sa.Engine) -> dict[str, list[dict]]:
    """The sandbox org's campaign records, read from its tables (none before a run first opened the org)."""
    from campaign_pipeline.sandbox.resources import SandboxSalesforceResource
    from campaign_pipeline.sandbox.salesforce_store import SalesforceStore

    schema = SandboxSalesforceResource().sandbox_schema
    if not sa.inspect(engine).has_table("records", schema=schema):
        return {sobject: [] for sobject in CAMPAIGN_SOBJECTS}
    store = SalesforceStore(engine, schema)
    return {sobject: store.records(sobject) for sobject in CAMPAIGN_SOBJECTS}


def _materialization(dev: DagsterDev, partition: str) -> tuple[str, dict]:
    """(run id, label -> value) of the partition's latest salesforce_sync materialization."""
    [latest] = dev.graphql(MATERIALIZATION_QUERY, {"partition": partition})["assetNodeOrError"]["assetMaterializations"]
    assert latest["partition"] == partition
    entries = {}
    for entry in latest["metadataEntries"]:
        if "intValue" in entry:
            entries[entry["label"]] = entry["intValue"]
        elif "table" in entry:
            entries[entry["label"]] = [json.loads(record) for record in entry["table"]["records"]]
    return latest["runId"], entries


def _metadata_row(page, label: str):
    return page.get_by_role("row").filter(has=page.get_by_text(label, exact=True)).first


def _launch_preview_from_the_launchpad(page, dev: DagsterDev, location: str, campaign_id: str) -> str:
    """Pick the campaign's partition and add the preview tag in the job's Launchpad, launch; the new run's id."""
    from playwright.sync_api import expect

    page.goto(f"{dev.base_url}/locations/{location}/jobs/{JOB_NAME}/playground")
    page.get_by_placeholder("Partition").click()
    page.keyboard.type(campaign_id)
    page.get_by_role("menuitem").filter(has_text=re.compile(rf"_{re.escape(campaign_id)}$")).click()
    # Choosing the partition tags the run with it; the custom tag goes in next to those.
    # A tag under the pointer also shows its text in a tooltip: the tag itself is the first match.
    expect(page.get_by_text(re.compile(rf"partition: .*{re.escape(campaign_id)}")).first).to_be_visible()
    page.get_by_role("button", name="Edit tags").click()
    tags = page.get_by_role("dialog")
    tags.get_by_role("button", name="Add custom tag").click()
    tags.get_by_placeholder("Tag Key").last.fill(PREVIEW_TAG)
    tags.get_by_placeholder("Tag Value").last.fill("true")
    tags.get_by_role("button", name="Apply").click()
    expect(page.get_by_text(f"{PREVIEW_TAG}: true").first).to_be_visible()
    page.get_by_role("button", name="Launch Run").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_a_preview_run_from_the_launchpad_shows_its_change_table_and_writes_nothing(
    dagster_dev: DagsterDev, campaign_keys: list[str], pipeline_db: sa.Engine, page, artifacts_dir: Path
):
    from playwright.sync_api import expect

    location = dagster_dev.wait_for_code_location()
    key = campaign_keys[0]
    campaign_id = _campaign_id(key)
    org_before = _org_campaign_records(pipeline_db)
    ledger_before = _ledger_rows(pipeline_db, campaign_id)

    run_id = _launch_preview_from_the_launchpad(page, dagster_dev, location, campaign_id)
    run = _wait_for_run(dagster_dev, run_id)
    assert run["status"] == "SUCCESS", f"{run}\n{_failure_messages(dagster_dev, run_id)}\n{dagster_dev.log_tail()}"
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert tags.get(PREVIEW_TAG) == "true" and tags.get("dagster/partition") == key, tags

    # Nothing reached the org or the ledger.
    assert _org_campaign_records(pipeline_db) == org_before
    assert _ledger_rows(pipeline_db, campaign_id) == ledger_before
    materialized_by, metadata = _materialization(dagster_dev, key)
    assert materialized_by == run_id
    assert metadata["write_calls"] == 0 and "created" not in metadata, metadata
    # A campaign never synced: the preview says it would create it, its statuses and members.
    assert metadata["would_create"] > 0, metadata
    assert (
        metadata["would_create"] + metadata["would_update"] + metadata["would_skip"] + metadata["would_fail"]
        == metadata["desired"]
    ), metadata

    page.goto(f"{dagster_dev.base_url}/assets/salesforce_sync?view=events&partition={key}")
    expect(_metadata_row(page, "would_create").get_by_role("cell").nth(1)).to_have_text(
        _number(metadata["would_create"])
    )
    expect(_metadata_row(page, "desired").get_by_role("cell").nth(1)).to_have_text(_number(metadata["desired"]))
    # A change whose sync key holds `|` (a member status, a member) renders in its own cell, every column in place.
    change = next(row for row in metadata["changes"] if "|" in row["sync_key"])
    change_row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=change["sync_key"], exact=True))
    cells = change_row.last.get_by_role("cell")
    expect(cells.nth(0)).to_have_text(change["object_kind"])
    expect(cells.nth(1)).to_have_text(change["sync_key"])
    expect(cells.nth(2)).to_have_text(change["action"])
    _screenshot(page, artifacts_dir, "20-preview-change-table.png")


def _launch_backfill_from_the_ui(
    page, dev: DagsterDev, location: str, campaign_ids: list[str], artifacts_dir: Path
) -> str:
    """Materialize all of the job for the chosen partitions (the dialog's partition picker); the backfill's id."""
    from playwright.sync_api import expect

    page.goto(f"{dev.base_url}/locations/{location}/jobs/{JOB_NAME}")
    page.locator("button", has_text="Materialize all").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Partition selection")).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    for campaign_id in campaign_ids:
        page.get_by_role("menuitem").filter(has_text=re.compile(rf"_{re.escape(campaign_id)}$")).click()
    page.keyboard.press("Escape")  # closes the partition picker, not the dialog
    expect(dialog.get_by_text(f"{len(campaign_ids)} partitions")).to_be_visible()
    _screenshot(page, artifacts_dir, "21-backfill-dialog.png")
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(created).to_be_visible()
    return created.inner_text().split()[-1]


def _wait_for_backfill(dev: DagsterDev, backfill_id: str, timeout: float = BACKFILL_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    backfill: dict = {}
    while time.monotonic() < deadline:
        dev.assert_alive()
        backfill = dev.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        runs_done = all(run["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for run in backfill.get("runs", []))
        if backfill.get("status") in BACKFILL_DONE and runs_done:
            return backfill
        time.sleep(3)
    raise AssertionError(
        f"backfill {backfill_id} still {backfill.get('status')} after {timeout:.0f}s\n{dev.log_tail()}"
    )


def test_a_backfill_of_three_campaigns_shows_each_its_own_counts_and_check(
    dagster_dev: DagsterDev, campaign_keys: list[str], pipeline_db: sa.Engine, page, artifacts_dir: Path
):
    from playwright.sync_api import expect

    location = dagster_dev.wait_for_code_location()
    keys = campaign_keys[1 : 1 + BACKFILL_SIZE]
    campaign_ids = [_campaign_id(key) for key in keys]

    backfill_id = _launch_backfill_from_the_ui(page, dagster_dev, location, campaign_ids, artifacts_dir)
    backfill = _wait_for_backfill(dagster_dev, backfill_id)
    runs = backfill["runs"]
    failures = "\n".join(_failure_messages(dagster_dev, run["id"]) for run in runs)
    assert backfill["status"] == "COMPLETED_SUCCESS", f"{backfill}\n{failures}\n{dagster_dev.log_tail()}"
    assert sorted(backfill["partitionNames"]) == sorted(keys)
    # The backfill policy batches contiguous campaigns: one run, the case where a partition could take another's.
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", runs
    batch_run = runs[0]["id"]

    expected = {}
    for key, campaign_id in zip(keys, campaign_ids, strict=True):
        materialized_by, metadata = _materialization(dagster_dev, key)
        assert materialized_by == batch_run
        # What the org now holds for this campaign, by the ledger the run wrote: every desired record, written.
        ledger = _ledger_rows(pipeline_db, campaign_id)
        assert set(ledger) == {"ok"}, ledger
        assert metadata["desired"] == ledger["ok"], (key, metadata, ledger)
        assert metadata["created"] + metadata["updated"] + metadata["unchanged"] == ledger["ok"], metadata
        assert metadata["failed"] == 0 and metadata["campaigns_in_run"] == BACKFILL_SIZE, metadata
        assert metadata["changes"] and all(row["sync_key"].startswith(campaign_id) for row in metadata["changes"])
        expected[key] = metadata
    # Campaigns of different sizes, so a partition showing another's (or the batch's) numbers cannot pass.
    assert len({metadata["desired"] for metadata in expected.values()}) > 1, expected

    for key, campaign_id in zip(keys, campaign_ids, strict=True):
        page.goto(f"{dagster_dev.base_url}/assets/salesforce_sync?view=events&partition={key}")
        for label in ("desired", "created", "unchanged", "campaigns_in_run"):
            expect(_metadata_row(page, label).get_by_role("cell").nth(1)).to_have_text(_number(expected[key][label]))
        expect(page.get_by_role("cell", name=re.compile(rf"^{re.escape(campaign_id)}(\|.*)?$")).first).to_be_visible()
        for other in campaign_ids:
            if other != campaign_id:
                assert page.get_by_role("cell", name=re.compile(rf"^{re.escape(other)}(\|.*)?$")).count() == 0
        _screenshot(page, artifacts_dir, f"22-backfill-{campaign_id}-salesforce-sync.png")

    # Each partition's check result names its partition (not "Partition —") and passed.
    page.goto(f"{dagster_dev.base_url}/assets/salesforce_sync?view=checks")
    page.get_by_text("Execution history", exact=True).click()
    for key in keys:
        evaluation = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
        expect(evaluation).to_have_count(1)
        expect(evaluation.get_by_text("Passed", exact=True)).to_be_visible()
    _screenshot(page, artifacts_dir, "23-backfill-checks-per-partition.png")
