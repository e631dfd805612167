"""The sandbox driven by the real mailchimp-marketing client over HTTP: shapes, paging, errors, truth."""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_oracle import malformed_records, truth_events, truth_recipients

from .conftest import client_for
from .fetching import canonical, fetch_events, fetch_pages, fetch_recipients


def test_ping_and_wrong_key_is_401_problem_json(sandbox: MailchimpSandbox, client) -> None:
    assert client.ping.get() == {"health_status": "Everything's Chimpy!"}
    wrong = client_for(sandbox, api_key="0123456789abcdef-us21")
    with pytest.raises(Exception) as raised:
        wrong.ping.get()
    assert raised.value.status_code == 401
    response = requests.get(f"{sandbox.base_url}/ping", auth=("anyone", "nope-us21"), timeout=10)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert set(problem) == {"type", "title", "status", "detail", "instance"}
    assert problem["status"] == 401
    assert sandbox.api_key not in response.text
    unicode_key = requests.get(f"{sandbox.base_url}/ping", auth=("anyone", "clé-us21"), timeout=10)
    assert unicode_key.status_code == 401


def test_unknown_campaign_is_404_and_count_over_1000_is_400(sandbox: MailchimpSandbox, client) -> None:
    with pytest.raises(Exception) as raised:
        client.reports.get_campaign_report("doesnotexist")
    assert raised.value.status_code == 404
    campaign_id = sandbox.account.campaign_ids()[0]
    response = requests.get(
        f"{sandbox.base_url}/reports/{campaign_id}/email-activity",
        params={"count": 1001},
        auth=("x", sandbox.api_key),
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["title"] == "Invalid Resource"


def test_campaign_list_filters_sort_and_paging(sandbox: MailchimpSandbox, client) -> None:
    account = sandbox.account
    everything = client.campaigns.list(count=1000)
    assert everything["total_items"] == len(account.campaign_ids(include_unsent=True))
    sent = client.campaigns.list(count=1000, status="sent", sort_field="send_time", sort_dir="DESC")
    sent_ids = [c["id"] for c in sent["campaigns"]]
    regular_ids = [s.campaign_id for s in account.campaign_specs() if not s.is_automation]
    assert sent_ids == list(reversed(regular_ids))
    assert all(c["type"] == "regular" and c["send_time"].endswith("+00:00") for c in sent["campaigns"])
    automation = client.campaigns.list(count=1000, type="automation")
    assert {c["status"] for c in automation["campaigns"]} == {"sending"}
    assert len(automation["campaigns"]) == 2
    newest_send = sent["campaigns"][0]["send_time"]
    since = client.campaigns.list(count=1000, since_send_time=sent["campaigns"][1]["send_time"])
    assert [c["id"] for c in since["campaigns"]] == [sent_ids[0]]
    assert newest_send
    paged = fetch_pages(lambda **kw: client.campaigns.list(**kw), "campaigns", 2)
    assert [c["id"] for c in paged] == [c["id"] for c in everything["campaigns"]]
    assert client.campaigns.list(list_id="other")["total_items"] == 0


def test_content_holds_the_campaign_links(sandbox: MailchimpSandbox, client) -> None:
    spec = sandbox.account.campaign_specs()[0]
    content = client.campaigns.get_content(spec.campaign_id)
    assert content["html"].startswith("<!doctype html>")
    assert all(url in content["html"] for url in spec.urls)


@pytest.mark.parametrize("page_size", [7, 1000])
def test_full_fetch_equals_truth_for_every_campaign(sandbox: MailchimpSandbox, client, page_size: int) -> None:
    account = sandbox.account
    assert len(account.campaign_ids()) == 5
    for campaign_id in account.campaign_ids():
        events, quarantined = fetch_events(client, campaign_id, page_size=page_size)
        pd.testing.assert_frame_equal(canonical(events), canonical(truth_events(account, campaign_id)))
        assert len(quarantined) == len(malformed_records(account, campaign_id)) == 3
        recipients = fetch_recipients(client, campaign_id, page_size=page_size)
        pd.testing.assert_frame_equal(recipients, truth_recipients(account, campaign_id), check_dtype=False)


def test_report_totals_reconcile_with_the_events(sandbox: MailchimpSandbox, client) -> None:
    account = sandbox.account
    for campaign_id in account.campaign_ids():
        report = client.reports.get_campaign_report(campaign_id)
        events = truth_events(account, campaign_id)
        recipients = truth_recipients(account, campaign_id)
        opens = events[events.action == "open"]
        clicks = events[events.action == "click"]
        assert report["emails_sent"] == len(recipients)
        assert report["opens"]["opens_total"] == len(opens)
        assert report["opens"]["unique_opens"] == opens.email_id.nunique()
        assert report["clicks"]["clicks_total"] == len(clicks)
        assert report["clicks"]["unique_subscriber_clicks"] == clicks.email_id.nunique()
        assert report["clicks"]["unique_clicks"] == len(clicks.drop_duplicates(["email_id", "url"]))
        assert report["bounces"]["hard_bounces"] == (recipients.send_status == "hard").sum()
        assert report["bounces"]["soft_bounces"] == (recipients.send_status == "soft").sum()
        assert report["unsubscribed"] == (events.action == "unsubscribe").sum()
        delivered = len(recipients) - report["bounces"]["hard_bounces"] - report["bounces"]["soft_bounces"]
        assert report["opens"]["open_rate"] == pytest.approx(opens.email_id.nunique() / delivered)
        assert set(report["forwards"]) == {"forwards_count", "forwards_opens"}
        assert report["type"] == ("automation" if account.spec(campaign_id).is_automation else "regular")


def test_automation_emails_are_reportable_campaigns(sandbox: MailchimpSandbox, client) -> None:
    workflows = client.automations.list()["automations"]
    assert len(workflows) == 1
    emails = client.automations.list_all_workflow_emails(workflows[0]["id"])["emails"]
    assert [e["position"] for e in emails] == [1, 2]
    for email in emails:
        report = client.reports.get_campaign_report(email["id"])
        assert report["type"] == "automation"
        recipients = truth_recipients(sandbox.account, email["id"])
        assert not recipients.sent_at_is_exact.any()
    assert client.lists.get_list(sandbox.account.list_id)["stats"]["member_count"] == 600


def test_filter_bots_through_call_api_drops_privacy_proxy_opens(sandbox: MailchimpSandbox, client) -> None:
    account = sandbox.account
    campaign_id = account.campaign_ids()[-1]
    body = client.api_client.call_api(
        "/reports/{campaign_id}/email-activity",
        "GET",
        path_params={"campaign_id": campaign_id},
        query_params={"count": 1000, "filter_bots": True},
    )
    served = sum(1 for m in body["emails"] if m["email_address"] for a in m["activity"] if a.get("action") == "open")
    # The two malformed activity entries carry "open" or no action; only the unparsable one counts here.
    filtered_truth = truth_events(account, campaign_id, filter_bots=True)
    assert served - 1 == (filtered_truth.action == "open").sum()
    all_opens = (truth_events(account, campaign_id).action == "open").sum()
    assert served - 1 < all_opens
    report = client.reports.get_campaign_report(campaign_id)["opens"]
    assert report["proxy_excluded_opens"] == (filtered_truth.action == "open").sum()
    assert report["proxy_excluded_unique_opens"] == filtered_truth[filtered_truth.action == "open"].email_id.nunique()
    assert report["proxy_excluded_unique_opens"] < report["unique_opens"]


def test_drafts_have_no_report_and_bad_since_is_400(sandbox: MailchimpSandbox, client) -> None:
    draft = client.campaigns.list(status="save")["campaigns"]
    assert len(draft) == 1 and draft[0]["send_time"] == ""
    assert client.campaigns.get(draft[0]["id"])["status"] == "save"
    with pytest.raises(Exception) as raised:
        client.reports.get_campaign_report(draft[0]["id"])
    assert raised.value.status_code == 404
    campaign_id = sandbox.account.campaign_ids()[0]
    with pytest.raises(Exception) as raised:
        client.reports.get_email_activity_for_campaign(campaign_id, since="yesterday")
    assert raised.value.status_code == 400
    method, path, query, status = sandbox.request_log[-1]
    assert (method, path, query, status) == (
        "GET",
        f"/3.0/reports/{campaign_id}/email-activity",
        {"since": "yesterday"},
        400,
    )


def test_sent_to_and_unsubscribed_agree_with_the_events(sandbox: MailchimpSandbox, client) -> None:
    account = sandbox.account
    unsubscribes = {cid: (truth_events(account, cid).action == "unsubscribe").sum() for cid in account.campaign_ids()}
    campaign_id = max(unsubscribes, key=unsubscribes.get)
    events = truth_events(account, campaign_id)
    sent_to = fetch_pages(lambda **kw: client.reports.get_campaign_recipients(campaign_id, **kw), "sent_to", 1000)
    opens = events[events.action == "open"].groupby("email_id")
    for recipient in sent_to:
        expected = opens.size().get(recipient["email_id"], 0)
        assert recipient["open_count"] == expected
        if expected:
            assert pd.Timestamp(recipient["last_open"]) == opens.timestamp.max()[recipient["email_id"]]
        else:
            assert recipient["last_open"] == ""
    unsubscribed = client.reports.get_unsubscribed_list_for_campaign(campaign_id, count=1000)
    assert unsubscribed["total_items"] == (events.action == "unsubscribe").sum() > 0
    assert all(u["reason"] and u["timestamp"].endswith("+00:00") for u in unsubscribed["unsubscribes"])


def test_fields_and_exclude_fields_trim_the_payload(sandbox: MailchimpSandbox, client) -> None:
    campaign_id = sandbox.account.campaign_ids()[-1]
    trimmed = client.reports.get_email_activity_for_campaign(
        campaign_id, count=5, fields=["emails.email_id", "emails.activity.action", "total_items"]
    )
    assert set(trimmed) == {"emails", "total_items"}
    assert all(set(member) == {"email_id", "activity"} for member in trimmed["emails"])
    assert all(set(a) <= {"action"} for member in trimmed["emails"] for a in member["activity"])
    report = client.reports.get_campaign_report(campaign_id, exclude_fields=["_links", "opens.last_open"])
    assert "_links" not in report and "last_open" not in report["opens"] and "opens_total" in report["opens"]
