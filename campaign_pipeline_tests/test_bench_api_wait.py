"""bench.api_wait: the wall time a run waits on the APIs, counted once when waits overlap."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
import requests

from bench.api_wait import ApiWaitClock, label_by_prefix, request_kind
from campaign_pipeline.salesforce.resource import SalesforceClient


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_overlapping_waits_count_once_and_per_api() -> None:
    clock = _Clock()
    waits = ApiWaitClock(clock)
    with waits.waiting("mailchimp"):  # 0 .. 5
        clock.now = 2.0
        with waits.waiting("salesforce"):  # 2 .. 4, overlapping
            clock.now = 4.0
        clock.now = 5.0
    clock.now = 9.0
    with waits.waiting("mailchimp"):  # 9 .. 10
        clock.now = 10.0
    assert waits.seconds() == 6.0
    assert waits.seconds("mailchimp") == 6.0
    assert waits.seconds("salesforce") == 2.0
    assert waits.waits == {"mailchimp": 2, "salesforce": 1}
    assert waits.intervals == [(0.0, 5.0), (9.0, 10.0)]
    assert waits.overlap(4.0, 9.5) == 1.5
    assert waits.overlap(5.0, 9.0) == 0.0


def test_a_wait_under_way_counts_up_to_now() -> None:
    clock = _Clock()
    waits = ApiWaitClock(clock)
    with waits.waiting("salesforce"):
        clock.now = 3.0
        assert waits.seconds() == 3.0
    clock.now = 8.0
    assert waits.seconds() == 3.0


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        threading.Event().wait(0.2)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_installed_times_session_requests_and_client_sleeps_then_puts_them_back(slow_server: str) -> None:
    send, sleep = requests.Session.send, SalesforceClient.sleep
    with ApiWaitClock().installed(label_by_prefix({slow_server: "mailchimp"})) as waits:
        assert requests.Session().get(f"{slow_server}/x", timeout=10).text == "ok"
        SalesforceClient.sleep(object.__new__(SalesforceClient), 0.1)
        requests.Session().get(f"{slow_server}/y", timeout=10)
    assert requests.Session.send is send and SalesforceClient.sleep is sleep
    assert waits.waits == {"mailchimp": 2, "salesforce": 1}
    assert [(label, method, url.rsplit("/", 1)[1]) for _, label, method, url in waits.sent] == [
        ("mailchimp", "GET", "x"),
        ("mailchimp", "GET", "y"),
    ]
    assert waits.seconds("mailchimp") >= 0.4
    assert waits.seconds("salesforce") >= 0.1
    assert waits.seconds() == pytest.approx(waits.seconds("mailchimp") + waits.seconds("salesforce"))
    # Nothing is timed once the block is over.
    requests.Session().get(f"{slow_server}/z", timeout=10)
    assert waits.waits["mailchimp"] == 2


def test_request_kinds_leave_out_version_ids_and_query() -> None:
    base = "https://127.0.0.1:5000/services/data/v62.0"
    assert request_kind("get", f"{base}/jobs/query/750xx0000000001AAA/results?maxRecords=5") == (
        "GET /jobs/query/{id}/results"
    )
    assert request_kind("PATCH", f"{base}/composite/sobjects/CampaignMember/Sync_Key__c") == (
        "PATCH /composite/sobjects/CampaignMember/Sync_Key__c"
    )
    assert request_kind("GET", f"{base}/query?q=SELECT+Id+FROM+Campaign") == "GET /query"
    assert request_kind("GET", f"{base}/sobjects/Contact/003000000000001") == "GET /sobjects/Contact/{id}"
    assert request_kind("GET", "http://127.0.0.1:9/3.0/reports/abc123") == "GET /3.0/reports/abc123"
