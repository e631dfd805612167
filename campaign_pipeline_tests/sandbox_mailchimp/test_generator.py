"""The synthetic account: determinism, realism, the clock (late activity, new sends) and shared state."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount, email_id_of
from campaign_pipeline.sandbox.mailchimp_oracle import malformed_records, truth_events, truth_recipients

from .conftest import client_for
from .fetching import canonical, fetch_events


def test_same_seed_same_account_other_seed_other_account() -> None:
    first, second = SandboxAccount(seed=3, n_members=300), SandboxAccount(seed=3, n_members=300)
    other = SandboxAccount(seed=4, n_members=300)
    assert first.campaign_ids() == second.campaign_ids()
    assert first.api_key == second.api_key and first.api_key.endswith("-us21")
    for campaign_id in first.campaign_ids():
        pd.testing.assert_frame_equal(truth_events(first, campaign_id), truth_events(second, campaign_id))
        pd.testing.assert_frame_equal(truth_recipients(first, campaign_id), truth_recipients(second, campaign_id))
    assert set(first.campaign_ids()).isdisjoint(other.campaign_ids())
    assert first.audience_emails() != other.audience_emails()


@pytest.fixture(scope="module")
def large_account() -> SandboxAccount:
    return SandboxAccount(seed=5, n_members=20_000, n_regular_campaigns=1, n_automation_emails=0)


def test_rates_are_realistic(large_account: SandboxAccount) -> None:
    campaign_id = large_account.campaign_ids()[0]
    large_account.simulate_late_activity(hours=30 * 24)  # let the tail of late opens arrive
    events = truth_events(large_account, campaign_id)
    recipients = truth_recipients(large_account, campaign_id)
    delivered = (recipients.send_status == "sent").sum()
    per_action = events.groupby("action").email_id.nunique()
    assert 0.20 <= per_action["open"] / delivered <= 0.40
    assert 0.02 <= per_action["click"] / delivered <= 0.05
    assert 0.002 <= (recipients.send_status == "hard").mean() <= 0.01
    assert 0.005 <= (recipients.send_status == "soft").mean() <= 0.02
    assert 0.001 <= per_action["unsubscribe"] / delivered <= 0.006


def test_response_has_the_texture_real_campaigns_have(large_account: SandboxAccount) -> None:
    campaign_id = large_account.campaign_ids()[0]
    events = truth_events(large_account, campaign_id)
    recipients = truth_recipients(large_account, campaign_id)
    send_time = recipients.sent_at.iloc[0]
    opens = events[events.action == "open"]
    proxy_openers = opens[opens.timestamp - send_time <= pd.Timedelta(minutes=1)].email_id.nunique()
    assert proxy_openers / len(recipients) >= 0.05  # privacy-proxy opens at delivery
    assert (opens.groupby("email_id").size() >= 2).sum() > 100  # repeat opens
    clicks = events[events.action == "click"]
    assert clicks.url.nunique() >= 3 and clicks.url.notna().all()
    assert (clicks.groupby("email_id").url.nunique() >= 2).any()
    # Bounce events only for sent-to hard/soft, with the right type, and not for every bounced recipient.
    bounces = events[events.action == "bounce"].merge(recipients[["email_id", "send_status"]], on="email_id")
    assert (bounces.bounce_type == bounces.send_status).all()
    bounced = recipients[recipients.send_status != "sent"]
    assert 0 < bounces.email_id.nunique() < len(bounced)
    assert events.loc[events.action != "bounce", "bounce_type"].isna().all()
    # Addresses: unicode, mixed case, and the same member spelled differently in activity and sent-to.
    addresses = recipients.email_address
    assert (addresses != addresses.str.lower()).mean() > 0.1
    assert (~addresses.map(str.isascii)).any()
    assert (recipients.email_id == addresses.map(lambda a: hashlib.md5(a.strip().lower().encode()).hexdigest())).all()
    spelled = events.merge(recipients[["email_id", "email_address"]], on="email_id", suffixes=("", "_sent_to"))
    assert (spelled.email_address != spelled.email_address_sent_to).any()
    assert (spelled.email_address.str.lower() == spelled.email_address_sent_to.str.lower()).all()
    # Event identity is unique, as the pipeline's de-duplication assumes.
    assert not events.duplicated(["email_id", "action", "timestamp", "url"]).any()


def test_late_activity_reaches_a_since_refetch_exactly(tmp_path: Path) -> None:
    account = SandboxAccount(seed=21, n_members=800, n_regular_campaigns=2, n_automation_emails=1)
    with MailchimpSandbox(account) as sandbox:
        client = client_for(sandbox)
        before = {cid: fetch_events(client, cid)[0] for cid in account.campaign_ids()}
        fetched_at = account.now
        new_events = account.simulate_late_activity(hours=72)
        assert new_events > 0
        assert new_events == sum(len(truth_events(account, cid)) - len(before[cid]) for cid in before)
        overlap = (fetched_at - pd.Timedelta(hours=1)).isoformat()
        for campaign_id, old in before.items():
            fresh, _ = fetch_events(client, campaign_id, since=overlap)
            assert (fresh.timestamp > pd.Timestamp(overlap)).all()
            unsubscribes, _ = fetch_events(client, campaign_id)
            merged = pd.concat([old, fresh, unsubscribes[unsubscribes.action == "unsubscribe"]])
            key = ["email_id", "action", "timestamp", "url"]
            merged = merged.assign(email_id=merged.email_address.map(email_id_of)).drop_duplicates(key)
            pd.testing.assert_frame_equal(canonical(merged), canonical(truth_events(account, campaign_id)))
        # A since after everything visible lists nobody: an incremental fetch with nothing new is one call.
        latest = client.reports.get_email_activity_for_campaign(
            account.campaign_ids()[0], since=account.now.isoformat(), count=1000
        )
        assert latest["total_items"] == 0 and latest["emails"] == []


def test_new_send_shows_up_in_the_api_with_early_response(sandbox: MailchimpSandbox, client) -> None:
    account = sandbox.account
    newest = client.campaigns.list(count=1, status="sent", sort_field="send_time", sort_dir="DESC")["campaigns"][0]
    campaign_id = account.simulate_new_send()
    assert campaign_id in account.campaign_ids() and campaign_id != newest["id"]
    found = client.campaigns.list(status="sent", since_send_time=newest["send_time"])["campaigns"]
    assert [c["id"] for c in found] == [campaign_id]
    report = client.reports.get_campaign_report(campaign_id)
    assert report["emails_sent"] == len(truth_recipients(account, campaign_id)) > 0
    # Sent an hour ago on the sandbox clock: the privacy-proxy opens are already in.
    assert report["opens"]["opens_total"] == (truth_events(account, campaign_id).action == "open").sum() > 0


def test_processes_share_clock_and_sends_through_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "mailchimp_state.json"
    one = SandboxAccount(seed=9, n_members=200, state_path=state)
    other = SandboxAccount(seed=9, n_members=200, state_path=state)
    start = other.now
    campaign_id = one.simulate_new_send()
    one.simulate_late_activity(hours=5)
    assert campaign_id in other.campaign_ids()
    assert other.now - start == pd.Timedelta(hours=5)
    pd.testing.assert_frame_equal(truth_events(one, campaign_id), truth_events(other, campaign_id))
    with pytest.raises(ValueError, match="belongs to seed 9"):
        SandboxAccount(seed=10, state_path=state)


def test_automation_recipients_keep_arriving() -> None:
    account = SandboxAccount(seed=2, n_members=2_000, n_regular_campaigns=0, n_automation_emails=1)
    campaign_id = account.campaign_ids()[0]
    before = truth_recipients(account, campaign_id)
    account.simulate_late_activity(hours=7 * 24)
    after = truth_recipients(account, campaign_id)
    assert len(after) > len(before) > 0
    assert set(before.email_id) < set(after.email_id)
    assert not after.sent_at_is_exact.any()


def test_malformed_records_are_listed_with_reasons(account: SandboxAccount) -> None:
    campaign_id = account.campaign_ids()[0]
    malformed = malformed_records(account, campaign_id)
    assert sorted(malformed.reason) == ["empty email address", "missing action", "unparsable timestamp"]
    truth = truth_events(account, campaign_id)
    assert truth.email_address.str.len().gt(0).all() and truth.action.notna().all()
    quiet = SandboxAccount(seed=11, n_members=600, include_malformed=False)
    assert malformed_records(quiet, campaign_id).empty


def test_deleted_member_vanishes_from_listings_but_not_from_report_totals(sandbox: MailchimpSandbox, client) -> None:
    account = sandbox.account
    campaign_id = max(account.campaign_ids(), key=lambda cid: len(truth_events(account, cid)))
    events = truth_events(account, campaign_id)
    victim = events.loc[events.action == "open", "email_address"].iloc[0]
    report_before = client.reports.get_campaign_report(campaign_id)
    account.simulate_member_deletion(victim.upper())
    after = truth_events(account, campaign_id)
    assert victim.lower() not in set(after.email_address.str.lower())
    assert len(after) == len(events) - (events.email_address.str.lower() == victim.lower()).sum()
    fetched, _ = fetch_events(client, campaign_id)
    pd.testing.assert_frame_equal(canonical(fetched), canonical(after))
    recipients = client.reports.get_campaign_recipients(campaign_id, count=1000)
    assert recipients["total_items"] == len(truth_recipients(account, campaign_id)) == report_before["emails_sent"] - 1
    assert client.reports.get_campaign_report(campaign_id)["opens"] == report_before["opens"]
    with pytest.raises(KeyError, match="not a member"):
        account.simulate_member_deletion("nobody@example.invalid")
