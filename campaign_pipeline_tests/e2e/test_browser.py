"""End to end through the Dagster UI: headless Chromium launches one campaign partition of sync_campaign_job and sees it succeed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from campaign_pipeline.run_workers import FORKED_WORKER_PID_TAG
from campaign_pipeline_tests.e2e.conftest import DagsterDev

# Startup, the run and teardown together stay well under this; pytest.ini's 600 s would be tight on a busy CI box.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

JOB_NAME = "sync_campaign_job"
PARTITIONS_DEF = "mailchimp_campaigns"
# The whole job for one sandbox campaign takes about a minute on two shared cores.
RUN_TIMEOUT_S = 420.0
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
# Assets at both ends and in the middle of the graph, one group per outside system plus metrics.
GRAPH_ASSETS = ("raw_email_events", "member_statuses", "campaign_totals", "salesforce_sync")

RUN_QUERY = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
    status jobName
    tags { key value }
    stepStats { stepKey status }
} } }
"""
RUN_FAILURES_QUERY = """
query($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection { events {
    __typename
    ... on ExecutionStepFailureEvent { stepKey error { message } }
    ... on RunFailureEvent { message }
    ... on EngineEvent { message error { message } }
} } } }
"""
ADD_PARTITION = """
mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
  }
}
"""
REPOSITORIES = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"


@pytest.fixture
def sandbox_campaign_key(dagster_dev: DagsterDev, monkeypatch: pytest.MonkeyPatch) -> str:
    return first_sent_campaign_key(dagster_dev, monkeypatch)


def first_sent_campaign_key(dagster_dev: DagsterDev, monkeypatch: pytest.MonkeyPatch) -> str:
    """The partition key, as the sensor makes it (`<send date>_<title slug>_<campaign id>`), of a sent campaign of the
    same sandbox account the webserver's runs will read (same data folder)."""
    from campaign_pipeline.definitions import load_active_profile
    from campaign_pipeline.deployment import choose_deployment
    from campaign_pipeline.mailchimp.sensors import sent_campaign_key
    from campaign_pipeline.storage.database import DATA_DIR_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(dagster_dev.data_dir))
    monkeypatch.delenv("MAILCHIMP_API_KEY", raising=False)
    campaigns = choose_deployment().mailchimp.list_sent_campaigns(list_id=load_active_profile().mailchimp.list_id)
    regular = [c for c in campaigns if c.sent_at_is_exact]
    assert regular, f"the sandbox lists no sent regular campaign: {campaigns}"
    return sent_campaign_key(regular[0])


def _add_campaign_partition(dev: DagsterDev, key: str) -> None:
    """What the sensor does for a new send; the run itself is launched by clicking in the UI."""
    repositories = dev.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"]
    assert len(repositories) == 1, repositories
    selector = {
        "repositoryName": repositories[0]["name"],
        "repositoryLocationName": repositories[0]["location"]["name"],
    }
    result = dev.graphql(ADD_PARTITION, {"selector": selector, "name": PARTITIONS_DEF, "key": key})
    assert result["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", result


def _wait_for_run(dev: DagsterDev, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        dev.assert_alive()
        run = dev.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        if run.get("status") in TERMINAL_STATUSES:
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} still {run.get('status')} after {timeout:.0f}s\n{dev.log_tail()}")


def _failure_messages(dev: DagsterDev, run_id: str) -> str:
    events = dev.graphql(RUN_FAILURES_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
    lines = []
    for event in events:
        if event["__typename"] == "ExecutionStepFailureEvent":
            lines.append(f"{event['stepKey']}: {event['error']['message']}")
        elif event["__typename"] == "RunFailureEvent":
            lines.append(event["message"])
        elif event["__typename"] == "EngineEvent" and event.get("error"):
            lines.append(f"{event['message']}: {event['error']['message']}")
    return "\n".join(lines)


def _show_whole_asset_graph(page) -> None:
    """Expand the job's asset graph from its per-system groups to every asset, with room to see it."""
    from playwright.sync_api import expect

    # Collapsed group boxes render first; nodes outside the viewport are not drawn at all.
    expect(page.get_by_text("mailchimp", exact=True).first).to_be_visible()
    page.get_by_text("Hide navigation", exact=True).click()
    # The graph's settings menu (the last gear on the page; the first is the app's settings).
    page.get_by_role("img", name="settings").last.click()
    expand = page.get_by_role("menuitem", name=re.compile("Expand all groups"))
    if expand.count():
        expand.click()
    # The menu stays open after a choice; it would cover the graph in the screenshot.
    page.keyboard.press("Escape")
    expect(page.get_by_role("menuitem", name=re.compile("all groups"))).to_be_hidden()


def test_materialize_one_campaign_partition_from_the_ui(
    dagster_dev: DagsterDev, sandbox_campaign_key: str, page, artifacts_dir: Path
):
    from playwright.sync_api import expect

    location = dagster_dev.wait_for_code_location()
    _add_campaign_partition(dagster_dev, sandbox_campaign_key)

    # A fresh instance greets a localhost user with a newsletter prompt a second after the page loads, which
    # closes any menu it lands on. Mark it seen first (what its "Skip" does), so it never shows.
    assert dagster_dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    page.goto(f"{dagster_dev.base_url}/locations/{location}/jobs/{JOB_NAME}")
    _show_whole_asset_graph(page)
    for asset in GRAPH_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "01-asset-graph.png"))

    page.locator("button", has_text="Materialize all").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Partition selection")).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type(sandbox_campaign_key)
    page.get_by_role("menuitem").filter(has_text=re.compile(rf"^{re.escape(sandbox_campaign_key)}")).click()
    page.keyboard.press("Escape")  # closes the partition picker, not the dialog
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    page.screenshot(path=str(artifacts_dir / "02-launch-dialog.png"))
    launch.click()

    expect(page.get_by_text(re.compile(r"Launched run \w+"))).to_be_visible()
    page.get_by_text("View", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]

    run = _wait_for_run(dagster_dev, run_id)
    if run["status"] != "SUCCESS":
        page.screenshot(path=str(artifacts_dir / "03-run-failed.png"), full_page=True)
    assert run["status"] == "SUCCESS", (
        f"run {run_id} ended {run['status']}:\n{_failure_messages(dagster_dev, run_id)}\n{dagster_dev.log_tail()}"
    )
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert run["jobName"] == JOB_NAME
    assert tags.get("dagster/partition") == sandbox_campaign_key
    assert tags.get("dagster/from_ui") == "true", "the run must have been launched from the UI"
    # The daemon's launcher forked the run from its warm worker, not a code-server subprocess importing it all again.
    assert FORKED_WORKER_PID_TAG in tags, tags
    steps = {step["stepKey"]: step["status"] for step in run["stepStats"]}
    assert "salesforce_sync" in steps and set(steps.values()) == {"SUCCESS"}, steps

    # The run page itself must say so, not only the API.
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "03-run-success.png"))

    # The campaign's funnel and status breakdown are a picture on campaign_totals' materialization.
    page.goto(f"{dagster_dev.base_url}/assets/campaign_totals?view=events&partition={sandbox_campaign_key}")
    page.get_by_role("row").filter(has_text="funnel").get_by_text("Show Markdown").click()
    funnel = page.get_by_role("img", name="campaign funnel")
    expect(funnel).to_be_visible()
    assert funnel.evaluate("image => image.naturalWidth") > 300  # the PNG decoded, not a broken-image icon
    page.screenshot(path=str(artifacts_dir / "04-campaign-funnel.png"))
