"""The new-sends sensor and the attribution-window schedule, evaluated on the session's Postgres Dagster instance."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.mailchimp.assets import MAILCHIMP_ASSETS
from campaign_pipeline.mailchimp.campaigns import SentCampaign
from campaign_pipeline.mailchimp.defs import build_mailchimp_sensors
from campaign_pipeline.mailchimp.schedules import build_mailchimp_resync_schedule, campaigns_in_window
from campaign_pipeline.mailchimp.sensors import NewSendsCursor, build_mailchimp_sensor, new_sends, sent_campaign_key
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.resources import SandboxMailchimpResource
from campaign_pipeline.stores import store_resources

JOB = dg.define_asset_job("mailchimp_campaign_job", selection=dg.AssetSelection.assets(*MAILCHIMP_ASSETS))
SEED, MEMBERS = 21, 400


@pytest.fixture
def sandbox_world(tmp_path):
    """The keyless resource (in-process sandbox on a state file) and a mirror of its account for the test to drive."""
    state_path = tmp_path / "sensor_state.json"
    resource = SandboxMailchimpResource(sandbox_state_path=str(state_path), sandbox_members=MEMBERS, sandbox_seed=SEED)
    resource.ping()
    return resource, SandboxAccount(seed=SEED, n_members=MEMBERS, state_path=state_path)


def tick(sensor: dg.SensorDefinition, instance, mailchimp, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mailchimp": mailchimp}) as context:
        return sensor(context)


def apply_partition_requests(instance, result: dg.SensorResult) -> None:
    """What the daemon does with the SensorResult's dynamic partition requests, in their order."""
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
        else:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def expected_keys(mailchimp) -> dict[str, str]:
    """campaign id -> the dated key the sensor must give it, from what Mailchimp lists (send time and title)."""
    return {c.id: sent_campaign_key(c) for c in mailchimp.list_sent_campaigns() if c.send_time is not None}


def test_first_tick_looks_back_only_the_lookback_then_finds_exactly_new_sends(sandbox_world, dagster_instance):
    mailchimp, account = sandbox_world
    sensor = build_mailchimp_sensor(JOB, lookback_days=7)
    now = pd.Timestamp(account.now)
    all_sent = account.campaign_ids()
    recent = [
        cid
        for cid in all_sent
        if pd.Timestamp(account.spec(cid).send_time, unit="s", tz="UTC") >= now - pd.Timedelta(days=7)
    ]
    assert 0 < len(recent) < len(all_sent)  # the account has older campaigns the first tick must not flood
    key_of = expected_keys(mailchimp)
    recent_keys = sorted(key_of[cid] for cid in recent)

    first = tick(sensor, dagster_instance, mailchimp)
    [add] = first.dynamic_partitions_requests
    assert add.partitions_def_name == "mailchimp_campaigns"
    # Added in send-date order, so the partitions' creation order is their send order too.
    assert list(add.partition_keys) == recent_keys
    assert sorted(r.partition_key for r in first.run_requests) == recent_keys
    assert all(r.run_key == f"new-send:{campaign_id_from_key(r.partition_key)}" for r in first.run_requests)
    cursor = NewSendsCursor.parse(first.cursor)
    assert cursor.max_send_time == max(
        pd.Timestamp(account.spec(cid).send_time, unit="s", tz="UTC") for cid in all_sent
    )
    apply_partition_requests(dagster_instance, first)
    assert sorted(dagster_instance.get_dynamic_partitions("mailchimp_campaigns")) == recent_keys

    quiet = tick(sensor, dagster_instance, mailchimp, first.cursor)
    assert not quiet.run_requests and not quiet.dynamic_partitions_requests
    assert quiet.skip_reason is not None
    assert NewSendsCursor.parse(quiet.cursor).max_send_time == cursor.max_send_time

    new_id = account.simulate_new_send()
    new_key = expected_keys(mailchimp)[new_id]
    found = tick(sensor, dagster_instance, mailchimp, quiet.cursor)
    assert [r.partition_key for r in found.run_requests] == [new_key]
    assert list(found.dynamic_partitions_requests[0].partition_keys) == [new_key]
    assert new_id in NewSendsCursor.parse(found.cursor).recent_ids
    apply_partition_requests(dagster_instance, found)

    again = tick(sensor, dagster_instance, mailchimp, found.cursor)
    assert not again.run_requests


def test_existing_partition_is_not_added_twice_but_still_run(sandbox_world, dagster_instance):
    """The campaign id decides identity: a campaign whose title was edited after its partition was added keeps
    that partition (no second one under the new title's key) and its run is requested on it."""
    mailchimp, account = sandbox_world
    newest = account.campaign_ids()[-1]
    current_key = expected_keys(mailchimp)[newest]
    key_under_old_title = f"{current_key.split('_')[0]}_title-before-the-edit_{newest}"
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", [key_under_old_title])
    result = tick(build_mailchimp_sensor(JOB, lookback_days=7), dagster_instance, mailchimp)
    assert key_under_old_title in [r.partition_key for r in result.run_requests]
    added = [key for request in result.dynamic_partitions_requests for key in request.partition_keys]
    assert all(campaign_id_from_key(key) != newest for key in added)


def test_lookback_zero_starts_from_now_without_requests(sandbox_world, dagster_instance):
    mailchimp, _ = sandbox_world
    result = tick(build_mailchimp_sensor(JOB, lookback_days=0), dagster_instance, mailchimp)
    assert not result.run_requests
    assert NewSendsCursor.parse(result.cursor).max_send_time is not None


def test_new_sends_at_the_same_second_are_not_lost():
    moment = pd.Timestamp("2026-01-20T10:00:00Z")
    first = SentCampaign("aaa111", "regular", moment, "A", "l1")
    cursor = NewSendsCursor().advanced([first])
    second = SentCampaign("bbb222", "regular", moment, "B", "l1")
    assert new_sends([first, second], cursor, moment, lookback_days=7) == [second]


def test_resync_schedule_requests_partitions_inside_the_attribution_window(sandbox_world, dagster_instance):
    mailchimp, account = sandbox_world
    now = pd.Timestamp(account.now)
    send_times = {cid: pd.Timestamp(account.spec(cid).send_time, unit="s", tz="UTC") for cid in account.campaign_ids()}
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", list(send_times))
    schedule = build_mailchimp_resync_schedule(JOB, attribution_window_days=10)
    context = dg.build_schedule_context(
        instance=dagster_instance, resources={"mailchimp": mailchimp}, scheduled_execution_time=now.to_pydatetime()
    )
    requests = schedule(context)
    expected = sorted(cid for cid, sent in send_times.items() if sent >= now - pd.Timedelta(days=10))
    assert 0 < len(expected) < len(send_times)
    # Bare-id partitions (not migrated yet) are requested under the key they have.
    assert sorted(r.partition_key for r in requests) == expected

    # Dated keys: each campaign is requested under its own partition's key.
    key_of = expected_keys(mailchimp)
    for cid in send_times:
        dagster_instance.delete_dynamic_partition("mailchimp_campaigns", cid)
    dagster_instance.add_dynamic_partitions("mailchimp_campaigns", sorted(key_of[cid] for cid in send_times))
    assert sorted(r.partition_key for r in schedule(context)) == sorted(key_of[cid] for cid in expected)
    assert len({r.run_key for r in requests}) == len(requests)


def test_resync_schedule_skips_campaigns_that_are_not_partitions_yet(sandbox_world, dagster_instance):
    mailchimp, _ = sandbox_world
    schedule = build_mailchimp_resync_schedule(JOB, attribution_window_days=30)
    context = dg.build_schedule_context(instance=dagster_instance, resources={"mailchimp": mailchimp})
    result = schedule(context)
    assert isinstance(result, dg.SkipReason)


def test_window_filter_excludes_old_and_future_sends():
    now = pd.Timestamp("2026-02-01T00:00:00Z")
    campaigns = [
        SentCampaign("old1", "regular", now - pd.Timedelta(days=31), None, None),
        SentCampaign("edge1", "regular", now - pd.Timedelta(days=30), None, None),
        SentCampaign("new1", "automation", now - pd.Timedelta(hours=1), None, None),
        SentCampaign("future1", "regular", now + pd.Timedelta(hours=1), None, None),
    ]
    assert [c.id for c in campaigns_in_window(campaigns, now, 30)] == ["edge1", "new1"]


def test_definitions_wire_the_sensor_and_schedule_to_the_lead_job():
    sensors, schedules = build_mailchimp_sensors(JOB, SyncProfile())
    defs = dg.Definitions(
        assets=MAILCHIMP_ASSETS,
        jobs=[JOB],
        sensors=sensors,
        schedules=schedules,
        resources={"mailchimp": SandboxMailchimpResource(), **store_resources()},
    )
    # Loading reads the current instance's definitions state: give it a live one, not whatever an earlier test's
    # instance left behind (its weak reference dies when that instance is collected).
    with dg.instance_for_test():
        dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def("mailchimp_new_sends_sensor").job_name == "mailchimp_campaign_job"
    assert defs.resolve_schedule_def("mailchimp_resync_schedule").job_name == "mailchimp_campaign_job"


def test_switching_to_a_live_source_does_not_reuse_the_sandbox_cursor(sandbox_world, dagster_instance, tmp_path):
    """The sandbox's cursor (its clock runs ahead: max_send_time in the future) must not make a live source skip
    real sends; a live key next to sandbox partitions is refused with a message saying what to do."""
    from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
    from campaign_pipeline.mailchimp.sensors import SourceStateMismatch
    from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox

    sandbox_resource, _ = sandbox_world
    sensor = build_mailchimp_sensor(JOB, lookback_days=3650)
    sandbox_tick = tick(sensor, dagster_instance, sandbox_resource)
    assert NewSendsCursor.parse(sandbox_tick.cursor).source == "mailchimp:sandbox"
    ahead = NewSendsCursor.parse(sandbox_tick.cursor)
    future = NewSendsCursor(
        max_send_time=pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=30),
        recent_ids=ahead.recent_ids,
        source=ahead.source,
    ).serialize()
    live_account = SandboxAccount(seed=SEED + 1, n_members=MEMBERS, state_path=tmp_path / "live.json")
    with MailchimpSandbox(live_account) as served:
        live = LiveMailchimpResource(connection=MailchimpConnection(api_key=served.api_key, base_url=served.base_url))
        fresh = tick(sensor, dagster_instance, live, future)
        assert sorted(campaign_id_from_key(r.partition_key) for r in fresh.run_requests) == sorted(
            live_account.campaign_ids()
        )
        assert NewSendsCursor.parse(fresh.cursor).source.startswith("mailchimp:")
        assert NewSendsCursor.parse(fresh.cursor).source != "mailchimp:sandbox"

        apply_partition_requests(dagster_instance, sandbox_tick)  # sandbox partitions now in the instance
        with pytest.raises(SourceStateMismatch, match="partitions found in mailchimp:sandbox"):
            tick(sensor, dagster_instance, live, future)


def test_bare_id_partitions_of_before_are_replaced_by_dated_keys_once(sandbox_world):
    """An instance that ran the sensor before dated keys: its bare-id partitions are replaced (the new key added
    before the old is deleted) without requesting any run, an id Mailchimp no longer lists keeps its bare key,
    and later ticks do not list everything again."""
    mailchimp, account = sandbox_world
    instance = dg.DagsterInstance.ephemeral()
    key_of = expected_keys(mailchimp)
    old_ids = account.campaign_ids()
    sensor = build_mailchimp_sensor(JOB, lookback_days=7)
    # A cursor as the sensor wrote it before dated keys (no keys_migrated field), having seen every send.
    old_cursor = json.loads(tick(sensor, instance, mailchimp).cursor)
    del old_cursor["keys_migrated"]
    old_cursor = json.dumps(old_cursor)
    instance.add_dynamic_partitions("mailchimp_campaigns", [*old_ids, "gone0001"])

    result = tick(sensor, instance, mailchimp, old_cursor)
    add, delete = result.dynamic_partitions_requests
    assert isinstance(add, dg.AddDynamicPartitionsRequest) and isinstance(delete, dg.DeleteDynamicPartitionsRequest)
    assert list(add.partition_keys) == sorted(key_of[cid] for cid in old_ids)
    assert sorted(delete.partition_keys) == sorted(old_ids)
    assert not result.run_requests  # nothing is synced again: stores key on campaign ids
    apply_partition_requests(instance, result)
    held = instance.get_dynamic_partitions("mailchimp_campaigns")
    assert sorted(held) == sorted([*(key_of[cid] for cid in old_ids), "gone0001"])
    # Created in send-date order: the picker's creation order and its alphabetical order agree.
    dated = [key for key in held if key != "gone0001"]
    assert dated == sorted(dated)
    assert [key[:10] for key in dated] == sorted(
        pd.Timestamp(account.spec(cid).send_time, unit="s", tz="UTC").strftime("%Y-%m-%d") for cid in old_ids
    )
    assert NewSendsCursor.parse(result.cursor).keys_migrated

    again = tick(sensor, instance, mailchimp, result.cursor)
    assert not again.dynamic_partitions_requests and not again.run_requests

    new_id = account.simulate_new_send()
    found = tick(sensor, instance, mailchimp, again.cursor)
    assert [r.partition_key for r in found.run_requests] == [expected_keys(mailchimp)[new_id]]


def test_profile_history_since_sets_how_far_the_first_tick_looks(sandbox_world, dagster_instance):
    mailchimp, account = sandbox_world
    send_times = {cid: pd.Timestamp(account.spec(cid).send_time, unit="s", tz="UTC") for cid in account.campaign_ids()}
    since = sorted(send_times.values())[1].normalize()
    expected = sorted(cid for cid, sent in send_times.items() if sent >= since)
    week = [cid for cid, sent in send_times.items() if sent >= pd.Timestamp(account.now) - pd.Timedelta(days=7)]
    assert len(week) < len(expected) < len(send_times)
    profile = SyncProfile.model_validate({"mailchimp": {"history_since": since.date().isoformat()}})
    [sensor], _ = build_mailchimp_sensors(JOB, profile)
    assert since.date().isoformat() in sensor.description

    first = tick(sensor, dagster_instance, mailchimp)
    assert sorted(campaign_id_from_key(r.partition_key) for r in first.run_requests) == expected
    # Only the first tick: the next one follows the cursor, whatever history_since says.
    apply_partition_requests(dagster_instance, first)
    assert not tick(sensor, dagster_instance, mailchimp, first.cursor).run_requests
