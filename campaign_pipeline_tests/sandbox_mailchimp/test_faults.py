"""Fault injection as the pipeline meets it through the real client: bare 429s, 5xx, slowness, the connection cap."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox

from .conftest import client_for


def test_bare_429_is_returned_not_raised_by_the_real_client(sandbox: MailchimpSandbox, client) -> None:
    sandbox.faults.fail_next(2, 429)
    first = client.ping.get()
    second = client.reports.get_campaign_report(sandbox.account.campaign_ids()[0])
    # mailchimp-marketing 3.0.80 hands back the requests.Response when the body is empty: callers must check it.
    assert isinstance(first, requests.Response) and first.status_code == 429 and first.content == b""
    assert isinstance(second, requests.Response) and second.status_code == 429
    assert client.ping.get() == {"health_status": "Everything's Chimpy!"}
    assert [status for *_, status in sandbox.request_log] == [429, 429, 200]


def test_random_429_rate_serves_the_rest(sandbox: MailchimpSandbox, client) -> None:
    sandbox.faults.rate_429_empty = 0.5
    outcomes = [client.ping.get() for _ in range(40)]
    bare = [o for o in outcomes if isinstance(o, requests.Response)]
    assert 5 <= len(bare) <= 35
    assert all(o.status_code == 429 for o in bare)
    assert outcomes.count({"health_status": "Everything's Chimpy!"}) == 40 - len(bare)


def test_5xx_raise_with_status_then_recover(sandbox: MailchimpSandbox, client) -> None:
    sandbox.faults.rate_5xx = 1.0
    with pytest.raises(Exception) as raised:
        client.ping.get()
    assert raised.value.status_code in (500, 503)
    sandbox.faults.rate_5xx = 0.0
    sandbox.faults.fail_next(1, 502)
    with pytest.raises(Exception) as raised:
        client.ping.get()
    assert raised.value.status_code == 502
    assert client.ping.get()["health_status"]


def test_slow_responses_take_at_least_the_configured_delay(sandbox: MailchimpSandbox, client) -> None:
    sandbox.faults.slow_ms = 150
    started = time.perf_counter()
    client.ping.get()
    assert time.perf_counter() - started >= 0.15
    slow = client_for(sandbox)
    slow.set_config({"api_key": sandbox.api_key, "timeout": 0.05})
    slow.api_client.host = sandbox.base_url
    with pytest.raises(Exception) as raised:
        slow.ping.get()
    assert "timed out" in str(raised.value.text).lower()


def test_eleventh_simultaneous_connection_gets_429(sandbox: MailchimpSandbox) -> None:
    sandbox.faults.pause()
    results: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        response = requests.get(f"{sandbox.base_url}/ping", auth=("u", sandbox.api_key), timeout=30)
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(13)]
    for thread in threads:
        thread.start()
    # The first ten are admitted and held; the other three are turned away while those ten are open.
    assert sandbox.wait_for_log(lambda log: sum(1 for *_, s in log if s == 429) == 3, timeout=30)
    sandbox.faults.resume()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [200] * 10 + [429] * 3
    assert sandbox.max_in_flight_seen >= 11
    throttled = [q for m, p, q, s in sandbox.request_log if s == 429]
    assert len(throttled) == 3
    # Once they finish, the key has its ten connections back.
    assert requests.get(f"{sandbox.base_url}/ping", auth=("u", sandbox.api_key), timeout=30).status_code == 200


def test_connection_cap_problem_json_names_the_limit(sandbox: MailchimpSandbox) -> None:
    sandbox.faults.max_connections = 0
    response = requests.get(f"{sandbox.base_url}/ping", auth=("u", sandbox.api_key), timeout=30)
    assert response.status_code == 429
    assert response.json()["detail"] == "You have exceeded the limit of 0 simultaneous connections."
