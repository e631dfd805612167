"""Through the Dagster UI: Salesforce rejects some records of a campaign launched from the UI, and the asset page says so.

The sandbox org of this `dagster dev` answers UNABLE_TO_LOCK_ROW to most write attempts (CAMPAIGN_PIPELINE_SANDBOX_FAULTS),
more often than the client's retries can ride out, so some of the run's writes fail for good.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign_pipeline.sandbox.fault_plan import FAULTS_ENV
from campaign_pipeline.storage import database
from campaign_pipeline_tests.e2e.conftest import REPO_ROOT, DagsterDev, instance_yaml_for, start_dagster_dev
from campaign_pipeline_tests.e2e.test_browser import (
    JOB_NAME,
    _add_campaign_partition,
    _failure_messages,
    _wait_for_run,
    first_sent_campaign_key,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

# Each write attempt of a record is refused 6 times in 10: after the client's 4 retries about 8% of the records (the
# seeded draws of the sandbox make it the same records every run) stay refused, the rest are written.
LOCK_ERROR_RATE = 0.6
MATERIALIZATION_QUERY = """
query($key: AssetKeyInput!, $partition: String!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetMaterializations(partitions: [$partition], limit: 1) { runId metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on MarkdownMetadataEntry { mdStr }
    } }
} } }
"""


@pytest.fixture(scope="module")
def dagster_dev(
    e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path, e2e_workspace: Path
) -> Iterator[DagsterDev]:
    """The module's own `dagster dev`: the conftest's, plus a sandbox org that refuses most writes."""
    state_dir = tmp_path_factory.mktemp("dagster_state")
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(instance_yaml_for((REPO_ROOT / "dagster.yaml").read_text(), state_dir))
    env = {
        database.DATABASE_URL_ENV: e2e_database_url,
        FAULTS_ENV: json.dumps({"salesforce": {"lock_error_rate": LOCK_ERROR_RATE}}),
    }
    data_dir = tmp_path_factory.mktemp("pipeline_data")
    yield from start_dagster_dev(e2e_workspace, home, data_dir, env, artifacts_dir / "dagster_dev_failures.log")


@pytest.fixture
def sandbox_campaign_key(dagster_dev: DagsterDev, monkeypatch: pytest.MonkeyPatch) -> str:
    return first_sent_campaign_key(dagster_dev, monkeypatch)


def _launch_partition_from_the_ui(page, dev: DagsterDev, location: str, partition: str, artifacts_dir: Path) -> str:
    from playwright.sync_api import expect

    page.goto(f"{dev.base_url}/locations/{location}/jobs/{JOB_NAME}")
    page.locator("button", has_text="Materialize all").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Partition selection")).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type(partition)
    page.get_by_role("menuitem").filter(has_text=re.compile(rf"^{re.escape(partition)}")).click()
    page.keyboard.press("Escape")
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(page.get_by_text(re.compile(r"Launched run \w+"))).to_be_visible()
    page.get_by_text("View", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_records_salesforce_rejects_show_their_count_and_error_code_in_the_ui(
    dagster_dev: DagsterDev, sandbox_campaign_key: str, page, artifacts_dir: Path
):
    from playwright.sync_api import expect

    location = dagster_dev.wait_for_code_location()
    _add_campaign_partition(dagster_dev, sandbox_campaign_key)
    assert dagster_dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    run_id = _launch_partition_from_the_ui(page, dagster_dev, location, sandbox_campaign_key, artifacts_dir)
    run = _wait_for_run(dagster_dev, run_id)
    # Refused records are the sync's result, not a crash: the run ends, its check says what failed.
    assert run["status"] == "SUCCESS", f"{run}\n{_failure_messages(dagster_dev, run_id)}\n{dagster_dev.log_tail()}"

    materialization = dagster_dev.graphql(
        MATERIALIZATION_QUERY, {"key": {"path": ["salesforce_sync"]}, "partition": sandbox_campaign_key}
    )["assetNodeOrError"]["assetMaterializations"][0]
    assert materialization["runId"] == run_id
    entries = {entry["label"]: entry for entry in materialization["metadataEntries"]}
    failed = entries["failed"]["intValue"]
    written = entries["created"]["intValue"] + entries["updated"]["intValue"]
    assert failed > 0 and written > 0, f"expected some records refused and some written: {entries}"
    assert "UNABLE_TO_LOCK_ROW" in entries["failures"]["mdStr"]

    page.goto(f"{dagster_dev.base_url}/assets/salesforce_sync?view=events&partition={sandbox_campaign_key}")
    failed_row = page.get_by_role("row").filter(has=page.get_by_text("failed", exact=True)).first
    expect(failed_row.get_by_role("cell").nth(1)).to_have_text(re.compile(rf"^\s*({failed}|{failed:,})\s*$"))
    page.get_by_role("row").filter(has=page.get_by_text("failures", exact=True)).get_by_text("Show Markdown").click()
    expect(page.get_by_role("dialog").get_by_text("UNABLE_TO_LOCK_ROW").first).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "10-salesforce-failures.png"))
    print(f"screenshot: {artifacts_dir / '10-salesforce-failures.png'}")
    page.keyboard.press("Escape")

    page.goto(f"{dagster_dev.base_url}/assets/salesforce_sync?view=checks")
    # The check's page: its latest evaluation failed, with the same count in its metadata.
    expect(page.get_by_text("no_failed_records").first).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
    check_failed = page.get_by_role("row").filter(has=page.get_by_text("failed", exact=True)).first
    expect(check_failed.get_by_role("cell").nth(1)).to_have_text(re.compile(rf"^\s*({failed}|{failed:,})\s*$"))
    page.screenshot(path=str(artifacts_dir / "11-no-failed-records-check.png"))
    print(f"screenshot: {artifacts_dir / '11-no-failed-records-check.png'}")
