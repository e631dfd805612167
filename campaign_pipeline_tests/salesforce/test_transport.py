"""The one Salesforce transport: reads retried with backoff, a create whose answer is lost never sent twice."""

from __future__ import annotations

import json

import pytest

from campaign_pipeline.salesforce.resource import SalesforceCallFailed


def test_a_read_answered_503_is_retried_by_the_transport(sandbox_org) -> None:
    client = sandbox_org.client(max_retries=3)
    sandbox_org.org.faults.fail_next_requests = 2
    rows = client.query_all("SELECT Id FROM Contact")
    assert rows and client.stats.retries == 2
    assert client.stats.calls["read"] == 1 and client.stats.calls["retry"] == 2


def test_a_create_whose_answer_is_lost_is_not_repeated_and_says_its_outcome_is_unknown(sandbox_org) -> None:
    client = sandbox_org.client(max_retries=4)
    before = len(sandbox_org.org.records("Lead"))
    sandbox_org.org.faults.lose_next_answers = 1
    body = json.dumps({"LastName": "Lost", "Company": "Answer Inc", "Email": "lost.answer@example.com"})
    with pytest.raises(SalesforceCallFailed) as failure:
        client.rest("write", "create a Lead", "POST", "sobjects/Lead", data=body, idempotent=False)
    assert failure.value.outcome_unknown and failure.value.status == 504
    assert "not sent again" in str(failure.value)
    # Salesforce committed it once; nobody sent it a second time.
    assert len(sandbox_org.org.records("Lead")) == before + 1
    assert client.stats.retries == 0


def test_an_update_whose_answer_is_lost_is_repeated_safely(sandbox_org) -> None:
    client = sandbox_org.client(max_retries=4)
    [lead] = [r for r in sandbox_org.org.records("Lead")][:1]
    sandbox_org.org.faults.lose_next_answers = 1
    body = json.dumps({"records": [{"attributes": {"type": "Lead"}, "Id": lead["Id"], "Company": "Again Inc"}]})
    answer = client.rest("write", "update a Lead", "PATCH", "composite/sobjects", data=body)
    assert answer[0].get("success"), answer
    assert client.stats.retries == 1
