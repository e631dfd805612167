"""The README's first command: `campaign-pipeline demo` syncs every sandbox campaign, and a re-run writes nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaign_pipeline.storage import database
from campaign_pipeline_tests.conftest import isolated_dagster_home

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_demo(env: dict[str, str], *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "campaign_pipeline.cli", "demo", "--json", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "syncing" in result.stderr  # progress is shown while it works
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two demo runs over every campaign (474 s alone with the hierarchy step) on 2 shared cores
def test_demo_syncs_every_campaign_then_writes_nothing_on_a_second_run(fresh_database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILCHIMP_", "SALESFORCE_"))}
    env[database.DATABASE_URL_ENV] = fresh_database_url
    env[database.DATA_DIR_ENV] = str(tmp_path / "data")
    env["DAGSTER_HOME"] = str(isolated_dagster_home(tmp_path, REPO_ROOT))

    first = run_demo(env)
    assert first["mode"] == "campaign"
    assert first["failed_runs"] == 0
    campaigns = first["campaigns"]
    assert len(campaigns) >= 4
    for campaign in campaigns:
        assert campaign["success"]
        for count in ("sent", "delivered", "opened", "clicked", "bounced"):
            assert campaign[count] > 0, (campaign["campaign_id"], count)
        assert campaign["salesforce"]["created"] > 0
        assert campaign["salesforce"]["failed"] == 0
    assert any(not c["sent_at_is_exact"] for c in campaigns)  # automation emails are flagged
    # Partitions people recognise: `<send date>_<title slug>_<campaign id>`, synced in send-date order.
    keys = [c["partition_key"] for c in campaigns]
    assert keys == sorted(keys)
    assert all(
        key.endswith(f"_{c['campaign_id']}") and key[:4].isdigit() for key, c in zip(keys, campaigns, strict=True)
    )
    assert first["salesforce_writes"] == sum(c["salesforce"]["created"] + c["salesforce"]["updated"] for c in campaigns)

    second = run_demo(env)
    assert {c["campaign_id"] for c in second["campaigns"]} == {c["campaign_id"] for c in campaigns}
    assert second["salesforce_writes"] == 0
    assert all(c["salesforce"]["created"] == c["salesforce"]["updated"] == 0 for c in second["campaigns"])
    # The demo says whose state it used; `sandbox reset` then deletes all of it.
    assert (first["source"], first["target"]) == ("mailchimp:sandbox", "salesforce:sandbox")
    reset = subprocess.run(
        [sys.executable, "-m", "campaign_pipeline.cli", "sandbox", "reset", "--yes"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reset.returncode == 0, reset.stderr[-4000:]
    assert f"campaign partitions of mailchimp:sandbox deleted: {len(campaigns)}" in reset.stdout
    import sqlalchemy as sa

    engine = sa.create_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM campaign_pipeline.sync_ledger")).scalar_one() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM campaign_pipeline.landed_campaign_sends")).scalar() == 0
            assert not conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = 'sandbox_salesforce'")).first()
    finally:
        engine.dispose()
    assert not (tmp_path / "data" / "sandbox" / "mailchimp_state.json").exists()


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "campaign_pipeline.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _stored_state(url: str) -> tuple:
    """The ledger's rows and the sandbox org's records, as digests: what a preview must leave exactly as it is."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ledger = conn.execute(
                sa.text(
                    "SELECT count(*), md5(string_agg(concat_ws('|', object_kind, sync_key, salesforce_id, content_hash,"
                    " last_result, attempted_at), ',' ORDER BY object_kind, sync_key)) FROM campaign_pipeline.sync_ledger"
                )
            ).one()
            org = conn.execute(
                sa.text(
                    "SELECT sobject, count(*), md5(string_agg(id || fields::text, ',' ORDER BY id))"
                    " FROM sandbox_salesforce.records GROUP BY sobject ORDER BY sobject"
                )
            ).all()
    finally:
        engine.dispose()
    return tuple(ledger), [tuple(row) for row in org]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # three demo runs over every campaign on 2 shared cores
def test_demo_preview_says_per_campaign_exactly_what_the_next_real_run_writes(fresh_database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILCHIMP_", "SALESFORCE_"))}
    env[database.DATABASE_URL_ENV] = fresh_database_url
    env[database.DATA_DIR_ENV] = str(tmp_path / "data")
    env["DAGSTER_HOME"] = str(isolated_dagster_home(tmp_path, REPO_ROOT))
    run_demo(env)
    assert int(_cli(env, "sandbox", "late-activity", "--hours", "48").split()[0]) > 0
    new_campaign = _cli(env, "sandbox", "new-send").split()[-1]

    before = _stored_state(fresh_database_url)
    preview = run_demo(env, "--preview")
    assert _stored_state(fresh_database_url) == before  # not one ledger row or org record changed
    assert preview["preview"] is True and preview["salesforce_writes"] == 0 and preview["failed_runs"] == 0
    real = run_demo(env)
    said = {c["campaign_id"]: c for c in preview["campaigns"]}
    done = {c["campaign_id"]: c for c in real["campaigns"]}
    assert set(said) == set(done) and new_campaign in said
    for campaign_id, planned in said.items():
        counts, written = planned["salesforce"], done[campaign_id]["salesforce"]
        assert (counts["would_create"], counts["would_update"], counts["would_skip"], counts["would_fail"]) == (
            written["created"],
            written["updated"],
            written["unchanged"],
            written["failed"],
        ), campaign_id
        for kind, kind_counts in planned["per_kind"].items():
            real_kind = done[campaign_id]["per_kind"][kind]
            assert (kind_counts["would_create"], kind_counts["would_update"]) == (
                real_kind["created"],
                real_kind["updated"],
            ), (campaign_id, kind)
    # The new send is all creates (its Campaign's own default Sent status adopted, not counted as created);
    # late activity makes updates in the campaigns sent before.
    assert said[new_campaign]["salesforce"]["would_create"] > 0
    assert said[new_campaign]["per_kind"]["campaign_member_status"]["would_create"] == 4
    assert sum(c["salesforce"]["would_update"] for c in said.values()) > 0
    assert preview["would_write"] == real["salesforce_writes"] > 0
