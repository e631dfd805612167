"""State knows its source and target: campaign partitions are owned by one Mailchimp account, and
`campaign-pipeline sandbox reset` deletes the sandboxes' state while every live account's and org's stays."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.core.diff import RESULT_OK
from campaign_pipeline.mailchimp.landing import LandingStore
from campaign_pipeline.mailchimp.ownership import PartitionOwnerMismatch, PartitionOwners
from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS
from campaign_pipeline.preflight import _partition_owner_check
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.sandbox.resources import (
    MAILCHIMP_SANDBOX_IDENTITY,
    SALESFORCE_SANDBOX_IDENTITY,
    local_sandbox_account,
    sandbox_state_path_default,
)
from campaign_pipeline.storage import database

LIVE_SOURCE, LIVE_TARGET = "mailchimp:acct-live-1", "salesforce:00D5g000004LIVE"


class Source:
    """What the preflight asks of the Mailchimp resource here: which account it is."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def source_identity(self) -> str:
        return self.identity


@pytest.fixture
def fresh_store(fresh_database_url, tmp_path, monkeypatch) -> sa.Engine:
    monkeypatch.setenv(database.DATABASE_URL_ENV, fresh_database_url)
    monkeypatch.setenv(database.DATA_DIR_ENV, str(tmp_path / "data"))
    return database.get_engine(fresh_database_url)


def test_a_partition_of_one_account_is_refused_for_another_and_an_unowned_one_is_claimed(fresh_store) -> None:
    owners = PartitionOwners(fresh_store)
    owners.record(["sbx0000001"], MAILCHIMP_SANDBOX_IDENTITY)
    refused = _partition_owner_check(Source(LIVE_SOURCE), ["sbx0000001", "new0000001"])
    assert not refused.ok
    assert "sbx0000001 (mailchimp:sandbox)" in refused.detail and "campaign-pipeline sandbox reset" in refused.detail
    assert _partition_owner_check(Source(LIVE_SOURCE), ["new0000001"]).ok
    assert owners.owners() == {"sbx0000001": MAILCHIMP_SANDBOX_IDENTITY, "new0000001": LIVE_SOURCE}
    # An owner never changes by recording again.
    owners.record(["new0000001"], MAILCHIMP_SANDBOX_IDENTITY)
    with pytest.raises(PartitionOwnerMismatch):
        owners.check(["new0000001"], MAILCHIMP_SANDBOX_IDENTITY)


def _ledger_rows(key: str) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"{key}|003A", key, "00vX", "h", RESULT_OK, None, None)],
        columns=[
            "sync_key",
            "campaign_id",
            "salesforce_id",
            "content_hash",
            "last_result",
            "error_code",
            "error_message",
        ],
    )


def test_sandbox_reset_deletes_the_sandboxes_state_and_keeps_the_live_one(fresh_store, tmp_path) -> None:
    account = local_sandbox_account(sandbox_state_path_default(), 300, 7)
    sandbox_key = account.campaign_specs()[0].campaign_id
    never_run = account.campaign_specs()[1].campaign_id  # found by the sensor, never synced: no owner yet
    with dg.instance_for_test() as instance:
        _reset_keeps_live_state(instance, fresh_store, tmp_path, sandbox_key, never_run)


def _reset_keeps_live_state(instance, fresh_store, tmp_path, sandbox_key: str, never_run: str) -> None:
    from campaign_pipeline.sandbox_reset import reset_sandbox_state

    live_key = "11ve000001"
    # The sandbox campaign under a dated key: owners, landed rows and frames know it by its campaign id.
    dated_sandbox_key = f"2026-11-30_welcome_{sandbox_key}"
    instance.add_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS, [dated_sandbox_key, never_run, live_key])
    PartitionOwners(fresh_store).record([sandbox_key], MAILCHIMP_SANDBOX_IDENTITY)
    PartitionOwners(fresh_store).record([live_key], LIVE_SOURCE)
    landing = LandingStore(fresh_store)
    for key in (sandbox_key, live_key):
        landing.land_send(key, pd.Timestamp("2026-11-30", tz="UTC"), True)
    pairs = {
        (MAILCHIMP_SANDBOX_IDENTITY, SALESFORCE_SANDBOX_IDENTITY): sandbox_key,
        (LIVE_SOURCE, SALESFORCE_SANDBOX_IDENTITY): live_key,  # a live source synced into the sandbox org
        (LIVE_SOURCE, LIVE_TARGET): live_key,
    }
    for (source, target), key in pairs.items():
        SyncLedger(fresh_store, source=source, target=target).record_results("campaign_member", _ledger_rows(key))
    cursor = tmp_path / "data" / "demo_sensor_cursor.json"
    cursor.write_text(json.dumps({"max_send_time": None, "recent_ids": [], "source": MAILCHIMP_SANDBOX_IDENTITY}))
    with fresh_store.begin() as conn:
        conn.execute(sa.text('CREATE SCHEMA "sandbox_salesforce"'))

    report = reset_sandbox_state(instance)

    assert sorted(report.partitions) == sorted([sandbox_key, never_run])
    assert instance.get_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS) == [live_key]
    assert PartitionOwners(fresh_store).owners() == {live_key: LIVE_SOURCE}
    with fresh_store.connect() as conn:
        sends = conn.execute(sa.text("SELECT campaign_id FROM campaign_pipeline.landed_campaign_sends")).scalars()
        assert list(sends) == [live_key]
        assert not conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = 'sandbox_salesforce'")).first()
    owners = SyncLedger(fresh_store).owners()
    assert list(zip(owners["source"], owners["target"], strict=True)) == [(LIVE_SOURCE, LIVE_TARGET)]
    assert report.ledger_rows == 2 and report.sandbox_org and report.sandbox_clock
    assert not cursor.exists()
    assert not (tmp_path / "data" / "sandbox" / "mailchimp_state.json").exists()
    assert any("live accounts' and orgs' state was kept" in line for line in report.lines())


def test_the_demo_says_it_did_not_reuse_another_accounts_cursor_or_partitions(fresh_store, tmp_path) -> None:
    from campaign_pipeline.definitions import build_definitions
    from campaign_pipeline.demo import discover_campaigns
    from campaign_pipeline.profile import SyncProfile

    defs = build_definitions(SyncProfile())
    live_cursor = {"max_send_time": "2030-01-01T00:00:00+00:00", "recent_ids": [], "source": LIVE_SOURCE}
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "demo_sensor_cursor.json").write_text(json.dumps(live_cursor))
    said: list[str] = []
    with dg.instance_for_test() as instance:
        keys = discover_campaigns(defs, instance, source=MAILCHIMP_SANDBOX_IDENTITY, progress=said.append)
        # A live cursor's send time (in 2030) would have hidden every sandbox send: it was not reused.
        assert keys and said == [
            f"the sensor cursor of {LIVE_SOURCE} is not reused for mailchimp:sandbox: listing its sends afresh"
        ]
        # Owners are kept per campaign id; the demo's keys are dated partition keys.
        assert all(key.count("_") == 2 for key in keys)
        PartitionOwners(fresh_store).record([campaign_id_from_key(keys[0])], LIVE_SOURCE)
        said.clear()
        again = discover_campaigns(defs, instance, source=MAILCHIMP_SANDBOX_IDENTITY, progress=said.append)
    assert again == keys[1:]
    assert said == [f"1 campaign partition(s) of {LIVE_SOURCE} are kept and not synced from mailchimp:sandbox"]


def test_the_demo_replaces_bare_id_partitions_of_before_by_dated_keys(fresh_store, tmp_path) -> None:
    """The demo applies the sensor's add and delete requests in order: bare campaign ids become dated keys."""
    from campaign_pipeline.core.campaign_keys import is_bare_campaign_id
    from campaign_pipeline.definitions import build_definitions
    from campaign_pipeline.demo import discover_campaigns
    from campaign_pipeline.profile import SyncProfile

    defs = build_definitions(SyncProfile())
    cursor_file = tmp_path / "data" / "demo_sensor_cursor.json"
    with dg.instance_for_test() as instance:
        keys = discover_campaigns(defs, instance, source=MAILCHIMP_SANDBOX_IDENTITY)
    # The same state as a demo of before dated keys left it: bare-id partitions, a cursor without keys_migrated.
    cursor = json.loads(cursor_file.read_text())
    del cursor["keys_migrated"]
    cursor_file.write_text(json.dumps(cursor))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS, [campaign_id_from_key(k) for k in keys])
        migrated = discover_campaigns(defs, instance, source=MAILCHIMP_SANDBOX_IDENTITY)
        assert migrated == keys
        assert instance.get_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS) == keys
    assert not any(is_bare_campaign_id(key) for key in keys)
    assert json.loads(cursor_file.read_text())["keys_migrated"] is True
