"""The resource drives the real mailchimp-marketing client over HTTP against the sandbox."""

from __future__ import annotations

import pandas as pd
import pytest

from campaign_pipeline.core.events import (
    ParsedRecords,
    merged_pages,
    parse_email_activity,
    parse_sent_to,
    parse_unsubscribes,
)
from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
from campaign_pipeline.mailchimp.resource import MailchimpApiError, MailchimpResource
from campaign_pipeline.sandbox.mailchimp_api import MailchimpFaults, MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_oracle import truth_events, truth_recipients

TRUTH_ORDER = ["campaign_id", "email_id", "action", "timestamp", "url"]


def fetched_events(mailchimp: MailchimpResource, campaign_id: str) -> pd.DataFrame:
    activity = parse_email_activity(campaign_id, mailchimp.fetch_email_activity(campaign_id))
    unsubscribes = parse_unsubscribes(campaign_id, mailchimp.fetch_unsubscribes(campaign_id))
    return pd.concat([activity.frame, unsubscribes.frame], ignore_index=True)


def comparable(events: pd.DataFrame) -> pd.DataFrame:
    columns = ["campaign_id", "email_id", "email_address", "action", "timestamp", "url", "bounce_type"]
    frame = events[columns].copy()
    frame["url"] = frame["url"].fillna("")
    frame["bounce_type"] = frame["bounce_type"].fillna("")
    return frame.sort_values(TRUTH_ORDER + ["email_address"]).reset_index(drop=True)


def test_full_fetch_equals_generator_truth(account, mailchimp):
    campaign_ids = account.campaign_ids()
    assert len(campaign_ids) >= 3
    for campaign_id in campaign_ids:
        truth = truth_events(account, campaign_id)
        events = fetched_events(mailchimp, campaign_id)
        assert len(events) == len(truth) > 0, campaign_id
        pd.testing.assert_frame_equal(comparable(events), comparable(truth), check_dtype=False)


def test_recipients_equal_generator_truth_with_automation_flag(account, mailchimp):
    for campaign in mailchimp.list_sent_campaigns():
        report = mailchimp.fetch_report(campaign.id)
        parsed = parse_sent_to(
            campaign.id,
            mailchimp.fetch_recipients(campaign.id),
            sent_at=pd.Timestamp(report["send_time"]),
            sent_at_is_exact=report["type"] != "automation",
        )
        truth = truth_recipients(account, campaign.id)
        key = ["email_id"]
        pd.testing.assert_frame_equal(
            parsed.frame.sort_values(key).reset_index(drop=True),
            truth.sort_values(key).reset_index(drop=True),
            check_dtype=False,
        )
        assert parsed.frame["sent_at_is_exact"].eq(campaign.type != "automation").all()


def test_list_sent_campaigns_covers_regular_and_automation_emails(account, mailchimp):
    listed = mailchimp.list_sent_campaigns()
    assert [c.id for c in listed] == sorted(account.campaign_ids(), key=lambda cid: (account.spec(cid).send_time, cid))
    assert {c.type for c in listed} == {"regular", "automation"}
    assert all(c.send_time is not None and c.send_time.tzinfo is not None for c in listed)
    newest = listed[-1].send_time
    assert [c.id for c in mailchimp.list_sent_campaigns(since_send_time=newest - pd.Timedelta(seconds=1))] == [
        listed[-1].id
    ]


def test_pages_and_calls_are_counted(account, sandbox, make_resource):
    mailchimp = make_resource(sandbox, page_size=100)
    campaign_id = account.campaign_ids()[-1]
    before = sandbox.calls("/email-activity")
    records = mailchimp.fetch_email_activity(campaign_id)
    served = sandbox.calls("/email-activity") - before
    expected_pages = -(-len(records) // 100)
    assert mailchimp.stats.pages == expected_pages == served
    assert mailchimp.stats.api_calls == served
    assert all(query["count"] == "100" for _, path, query, _ in sandbox.request_log if "email-activity" in path)


def test_survives_429_without_body_and_5xx(account, sandbox, mailchimp):
    campaign_id = account.campaign_ids()[0]
    sandbox.faults.fail_next(3, 429)
    sandbox.faults.fail_next(2, 503)
    sandbox.faults.fail_next(1, 500)
    events = fetched_events(mailchimp, campaign_id)
    assert len(events) == len(truth_events(account, campaign_id))
    statuses = [status for *_, status in sandbox.request_log]
    assert statuses.count(429) == 3 and statuses.count(503) == 2 and statuses.count(500) == 1
    assert mailchimp.stats.retries == 6
    assert mailchimp.stats.api_calls == len(sandbox.request_log)


def test_survives_random_faults_across_parallel_pages(account, sandbox, make_resource):
    sandbox.faults.rate_429_empty = 0.15
    sandbox.faults.rate_5xx = 0.1
    mailchimp = make_resource(sandbox, page_size=50, max_retries=12)
    campaign_id = account.campaign_ids()[0]
    events = fetched_events(mailchimp, campaign_id)
    assert mailchimp.stats.retries > 0
    pd.testing.assert_frame_equal(comparable(events), comparable(truth_events(account, campaign_id)), check_dtype=False)


class SlowFirstFaults(MailchimpFaults):
    """Only the first request is slow (past the client's timeout); the server then recovers."""

    def __init__(self, first_delay_ms: int):
        super().__init__()
        self._first_delay_ms = first_delay_ms
        self.slow_reads = 0

    @property
    def slow_ms(self) -> int:
        self.slow_reads += 1
        return self._first_delay_ms if self.slow_reads <= 2 else 0

    @slow_ms.setter
    def slow_ms(self, value: int) -> None:
        pass


def test_timed_out_request_is_retried_until_served(account, make_resource):
    campaign_id = account.campaign_ids()[0]
    with MailchimpSandbox(account, faults=SlowFirstFaults(first_delay_ms=400)) as served:
        mailchimp = make_resource(served, timeout_seconds=0.1, max_retries=3)
        assert mailchimp.fetch_report(campaign_id)["id"] == campaign_id
    assert mailchimp.stats.retries == 1
    assert mailchimp.stats.api_calls == 2


def test_slow_responses_within_the_timeout_are_served_and_endless_timeouts_fail_clearly(
    account, sandbox, make_resource
):
    campaign_id = account.campaign_ids()[0]
    sandbox.faults.slow_ms = 150
    patient = make_resource(sandbox, timeout_seconds=3.0)
    assert patient.fetch_report(campaign_id)["id"] == campaign_id
    assert patient.stats.retries == 0
    hasty = make_resource(sandbox, timeout_seconds=0.05, max_retries=1)
    with pytest.raises(MailchimpApiError, match=r"still failing after 2 attempts \(last: network error"):
        hasty.fetch_report(campaign_id)
    assert hasty.stats.api_calls == 2


def test_never_more_than_the_connection_cap(account, sandbox, make_resource):
    # Each answer takes 150 ms, far longer than starting a request, so the pool's four requests overlap
    # even on a loaded machine (at 20 ms a busy CI box sometimes saw only three at once).
    sandbox.faults.slow_ms = 150
    sandbox.faults.max_connections = 4
    mailchimp = make_resource(sandbox, page_size=25, max_connections=4)
    campaign_id = account.campaign_ids()[0]
    mailchimp.fetch_email_activity(campaign_id)
    assert sandbox.max_in_flight_seen == 4
    assert not [status for *_, status in sandbox.request_log if status == 429]


def test_filter_bots_goes_through_as_query_parameter(account, sandbox, make_resource):
    mailchimp = make_resource(sandbox, filter_bots=True)
    campaign_id = account.campaign_ids()[0]
    mailchimp.fetch_email_activity(campaign_id)
    queries = [query for _, path, query, _ in sandbox.request_log if "email-activity" in path]
    assert queries and all(query.get("filter_bots") == "true" for query in queries)


def test_since_is_sent_with_whole_seconds_utc(account, sandbox, mailchimp):
    campaign_id = account.campaign_ids()[0]
    since = pd.Timestamp("2026-01-10T12:30:45.900+02:00")
    mailchimp.fetch_email_activity(campaign_id, since=since)
    queries = [query for _, path, query, _ in sandbox.request_log if "email-activity" in path]
    assert queries[0]["since"] == "2026-01-10T10:30:45+00:00"


def test_bad_key_fails_clearly_without_the_key(account, sandbox, make_resource):
    wrong_key = "0123456789abcdef0123456789abcdef-us21"
    mailchimp = make_resource(sandbox, api_key=wrong_key)
    with pytest.raises(MailchimpApiError) as failure:
        mailchimp.fetch_report(account.campaign_ids()[0])
    assert failure.value.status == 401
    assert "MAILCHIMP_API_KEY" in str(failure.value) and "API Key Invalid" in str(failure.value)
    assert wrong_key not in str(failure.value) and "0123456789abcdef" not in str(failure.value)


def test_key_without_data_center_is_refused_without_echoing_it(sandbox, make_resource):
    mailchimp = make_resource(sandbox, api_key="secretsecretsecret")
    with pytest.raises(MailchimpApiError, match="data-center suffix") as failure:
        mailchimp.ping()
    assert "secretsecretsecret" not in str(failure.value)


def test_unknown_campaign_is_a_404_naming_the_endpoint(mailchimp):
    with pytest.raises(MailchimpApiError, match=r"/reports/nosuchcampaign1 failed with HTTP 404") as failure:
        mailchimp.fetch_report("nosuchcampaign1")
    assert failure.value.status == 404


def test_unsafe_campaign_id_is_refused_before_any_request(sandbox, mailchimp):
    with pytest.raises(MailchimpApiError, match="not a Mailchimp campaign id"):
        mailchimp.fetch_report("../lists")
    assert sandbox.request_log == []


def test_page_size_is_validated():
    with pytest.raises(Exception, match="page_size"):
        LiveMailchimpResource(connection=MailchimpConnection(api_key="k-us21"), page_size=1001)
    with pytest.raises(Exception, match="max_connections"):
        LiveMailchimpResource(connection=MailchimpConnection(api_key="k-us21"), max_connections=11)


class ClockJumpFaults(MailchimpFaults):
    """Advances the sandbox clock once, in the middle of a paged listing (new automation recipients appear)."""

    def __init__(self, account, after_requests: int, hours: float):
        super().__init__()
        self.account, self.after_requests, self.hours = account, after_requests, hours
        self.requests = 0

    def draw(self):
        self.requests += 1
        if self.requests == self.after_requests:
            self.account.simulate_late_activity(hours=self.hours)
        return super().draw()


def test_listing_that_grows_while_paging_is_read_again(account, make_resource):
    automation = [cid for cid in account.campaign_ids() if account.spec(cid).is_automation][-1]
    recipients_before = len(truth_recipients(account, automation))
    faults = ClockJumpFaults(account, after_requests=2, hours=24 * 10)
    with MailchimpSandbox(account, faults=faults) as served:
        mailchimp = make_resource(served, page_size=20, max_connections=1)
        records = mailchimp.fetch_recipients(automation)
    truth = truth_recipients(account, automation)
    assert len(truth) > recipients_before  # the clock jump really grew the listing mid-read
    assert sorted(r["email_id"] for r in records) == sorted(truth["email_id"])
    assert mailchimp.stats.pages > -(-len(truth) // 20)  # more than one full read: it read again


def test_only_the_fields_the_pipeline_reads_are_requested(account, sandbox, make_resource):
    campaign_id = account.campaign_ids()[0]
    trimmed = make_resource(sandbox).fetch_recipients(campaign_id)
    assert set(trimmed[0]) == {"email_address", "email_id", "status"}
    full = make_resource(sandbox, trim_fields=False).fetch_recipients(campaign_id)
    assert {"merge_fields", "open_count"} <= set(full[0])
    assert [(r["email_id"], r["status"]) for r in trimmed] == [(r["email_id"], r["status"]) for r in full]


def test_parsed_page_by_page_equals_parsed_whole(account, sandbox, make_resource):
    """What landing does (each page parsed as it arrives, in the thread that fetched it) gives the very frames a
    parse of the whole listing gives, and parses each page once."""
    mailchimp = make_resource(sandbox, page_size=7)
    campaign_id = account.campaign_ids()[-1]
    whole = parse_email_activity(campaign_id, mailchimp.fetch_email_activity(campaign_id))
    page_sizes: list[int] = []

    def parse_page(records: list) -> ParsedRecords:
        page_sizes.append(len(records))
        return parse_email_activity(campaign_id, records)

    before = mailchimp.stats.pages
    paged = merged_pages(mailchimp.fetch_email_activity_pages(campaign_id, parse_page), "events")
    assert len(page_sizes) == mailchimp.stats.pages - before > 3
    assert max(page_sizes) == 7
    pd.testing.assert_frame_equal(paged.frame, whole.frame)
    # The same refused records (listed page by page, so in another order).
    assert len(paged.quarantined) == len(whole.quarantined) > 0
    pd.testing.assert_frame_equal(
        paged.quarantined.sort_values(["reason", "record"]).reset_index(drop=True),
        whole.quarantined.sort_values(["reason", "record"]).reset_index(drop=True),
    )

    recipients = parse_sent_to(campaign_id, mailchimp.fetch_recipients(campaign_id), None, True)
    paged_recipients = merged_pages(
        mailchimp.fetch_recipient_pages(campaign_id, lambda records: parse_sent_to(campaign_id, records, None, True)),
        "recipients",
    )
    assert len(paged_recipients.frame) > 7
    pd.testing.assert_frame_equal(paged_recipients.frame, recipients.frame)
