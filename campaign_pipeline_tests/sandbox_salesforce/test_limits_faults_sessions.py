"""API quota, the Sforce-Limit-Info header, injected faults, session expiry and the OAuth password login."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from campaign_pipeline.sandbox.salesforce_api import DEFAULT_PASSWORD


def test_every_response_carries_api_usage_and_limits_reports_remaining(sf, org):
    sf.Contact.create({"LastName": "A"})
    sf.query("SELECT Id FROM Contact")
    assert sf.api_usage["api-usage"].used == 2 and sf.api_usage["api-usage"].total == 15_000
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 15_000, "Remaining": 15_000 - 2}
    assert org.api_calls_used() == 2
    assert org.calls("limits") == 1 and org.calls("write") == 1 and org.calls("read") == 1


def test_quota_exhaustion_answers_request_limit_exceeded(sf, org):
    org.daily_api_limit = 3
    for index in range(3):
        sf.Contact.create({"LastName": f"L{index}"})
    with pytest.raises(SalesforceRefusedRequest) as error:
        sf.Contact.create({"LastName": "one too many"})
    assert error.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert len(org.records("Contact")) == 3


def test_request_limit_fault(sf, org):
    org.faults.request_limit_exceeded = True
    with pytest.raises(SalesforceRefusedRequest) as error:
        sf.query("SELECT Id FROM Contact")
    assert error.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    org.faults.request_limit_exceeded = False
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0


def test_lock_errors_hit_a_share_of_collection_records(sf, org):
    org.faults.lock_error_rate = 0.5
    records = [{"attributes": {"type": "Contact"}, "LastName": f"L{i}"} for i in range(200)]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    locked = [r for r in results if not r["success"]]
    assert 60 < len(locked) < 140
    assert {r["errors"][0]["statusCode"] for r in locked} == {"UNABLE_TO_LOCK_ROW"}
    assert len(org.records("Contact")) == 200 - len(locked)


def test_lock_error_on_a_single_call_is_a_400(sf, org):
    org.faults.lock_error_rate = 1.0
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.Contact.create({"LastName": "A"})
    assert error.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert org.records("Contact") == []


def test_lock_errors_in_bulk_results(sf, org):
    org.faults.lock_error_rate = 1.0
    [summary] = sf.bulk2.Contact.insert(records=[{"LastName": "A"}, {"LastName": "B"}], wait=0.01)
    assert summary["numberRecordsFailed"] == 2
    assert "UNABLE_TO_LOCK_ROW" in sf.bulk2.Contact.get_failed_records(summary["job_id"])


def test_server_errors_are_injected_before_any_write(sf, org):
    org.faults.fail_next_requests = 2
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as error:
            sf.Contact.create({"LastName": "A"})
        assert error.value.status == 503
    assert org.records("Contact") == []
    sf.Contact.create({"LastName": "A"})
    assert len(org.records("Contact")) == 1
    org.faults.rate_5xx = 1.0
    with pytest.raises(SalesforceGeneralError):
        sf.query("SELECT Id FROM Contact")


def test_latency_is_added_to_responses(sf, org):
    import time

    org.faults.latency_ms = 150
    started = time.perf_counter()
    sf.query("SELECT Id FROM Contact")
    assert time.perf_counter() - started >= 0.15


def test_expired_session_gets_401_and_the_fresh_one_works(org):
    client = org.client()
    client.Contact.create({"LastName": "A"})
    old = org.session_id
    new = org.expire_session()
    assert new != old and org.session_id == new
    with pytest.raises(SalesforceExpiredSession) as error:
        client.query("SELECT Id FROM Contact")
    assert error.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    assert org.client().query("SELECT Id FROM Contact")["totalSize"] == 1


def test_oauth_password_login_gives_a_working_session(org):
    session = org.requests_session()
    refused = session.post(
        org.token_url, data={"grant_type": "password", "username": org.username, "password": "wrong"}
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    granted = session.post(
        org.token_url, data={"grant_type": "password", "username": org.username, "password": DEFAULT_PASSWORD}
    )
    token = granted.json()
    assert granted.status_code == 200 and token["instance_url"] == org.instance_url
    assert org.calls("auth") == 2
    client = Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=org.requests_session(),
        version=org.api_version,
    )
    assert client.query("SELECT Id FROM Lead")["totalSize"] == 0


def test_unknown_token_is_refused_and_tls_is_required(org):
    stranger = Salesforce(
        instance_url=org.instance_url,
        session_id="00D000000000000!forged",
        session=org.requests_session(),
        version=org.api_version,
    )
    with pytest.raises(SalesforceExpiredSession):
        stranger.query("SELECT Id FROM Contact")
    # The org serves TLS only, with a certificate from its own throwaway CA.
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{org.instance_url}/services/data/")


def test_fault_draws_repeat_for_the_same_seed(sf, org):
    from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults

    records = [{"attributes": {"type": "Contact"}, "LastName": f"L{i}"} for i in range(50)]
    outcomes = []
    for _ in range(2):
        org.faults = SalesforceFaults(lock_error_rate=0.3, seed=11)
        results = sf.restful("composite/sobjects", method="POST", json={"records": records})
        outcomes.append([r["success"] for r in results])
    assert outcomes[0] == outcomes[1] and not all(outcomes[0])


def test_fault_settings_are_validated():
    from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults

    with pytest.raises(ValueError, match="lock_error_rate"):
        SalesforceFaults(lock_error_rate=1.5)
    with pytest.raises(ValueError, match="latency_ms"):
        SalesforceFaults(latency_ms=-1)


def test_session_expires_mid_run_after_n_requests(org):
    client = org.client()
    first_session = org.session_id
    org.faults.expire_session_after = 3
    client.Contact.create({"LastName": "A"})
    client.Contact.create({"LastName": "B"})
    with pytest.raises(SalesforceExpiredSession):
        client.Contact.create({"LastName": "C"})
    assert org.session_id != first_session
    org.client().Contact.create({"LastName": "C"})  # a client re-reading the session carries on
    assert [c["LastName"] for c in org.records("Contact")] == ["A", "B", "C"]


def test_a_lost_answer_still_commits_the_write(sf, org):
    org.faults.lose_next_answers = 1
    with pytest.raises(SalesforceGeneralError) as error:
        sf.Contact.create({"LastName": "Committed anyway"})
    assert error.value.status == 504
    assert [c["LastName"] for c in org.records("Contact")] == ["Committed anyway"]
    sf.Contact.create({"LastName": "Next"})  # only the next answer was lost
    assert len(org.records("Contact")) == 2
