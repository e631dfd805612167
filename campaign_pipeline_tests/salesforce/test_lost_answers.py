"""Every write path when Salesforce commits and the answer is lost (the sandbox's ``faults.lose_next_answers``).

Each test loses the answer to one chosen call, then re-runs, and asserts exactly one record per key in the org.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from campaign_pipeline.salesforce.engine import sync_desired_records
from campaign_pipeline.salesforce.engine.bulk import upload_splits
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session

from .conftest import AUDIENCE, PROFILE, statuses_for

KEYED = PROFILE.model_copy(
    update={"field_mapping": PROFILE.field_mapping.model_copy(update={"campaign_member_key_field": "Mailchimp_Key__c"})}
)


def bulk(profile, threshold: int = 5):
    return profile.model_copy(update={"sync": profile.sync.model_copy(update={"bulk_threshold": threshold})})


class LosingClient(SalesforceClient):
    """A client on the sandbox org that makes the org lose its answer to the first call whose description
    matches ``lose`` (a regex): the org carries the call out, then answers 504 as a lost gateway answer would."""

    def __init__(self, org: Any, lose: str, **settings: Any) -> None:
        super().__init__(
            org.client(),
            target="Salesforce target: SANDBOX org (lost answers)",
            is_sandbox=True,
            reauthenticate=lambda: sandbox_session(org),
            **{"backoff_seconds": 0.0, "max_retries": 2, **settings},
        )
        self.org, self.lose, self.lost_in = org, lose, ""

    def call(self, kind: str, what: str, send: Any, *, idempotent: bool = True) -> Any:
        if not self.lost_in and re.search(self.lose, what):
            self.lost_in = what
            self.org.faults.lose_next_answers = 1
        return super().call(kind, what, send, idempotent=idempotent)


def members_per_person(org) -> Counter:
    return Counter(m.get("ContactId") or m.get("LeadId") for m in org.records("CampaignMember"))


def run_losing(sandbox_org, statuses, profile, lose: str):
    client = LosingClient(sandbox_org.org, lose)
    desired = sandbox_org.desired(statuses, profile, client=client)
    report = sync_desired_records(client, sandbox_org.ledger, desired, profile.sync)
    assert client.lost_in, f"no call matched {lose!r}"
    return report


def assert_one_member_per_person_after_rerun(sandbox_org, statuses, profile) -> None:
    again = sandbox_org.sync(statuses, profile)
    assert again.failures.empty, again.failures.to_dict("records")
    counts = members_per_person(sandbox_org.org)
    assert len(counts) == again.outcomes["campaign_member"].desired
    assert set(counts.values()) == {1}, {person: n for person, n in counts.items() if n > 1}
    # And a third run has nothing left to do.
    assert sandbox_org.sync(statuses, profile).write_calls == 0


@pytest.mark.parametrize(
    "profile, lose",
    [
        (PROFILE, r"^create \d+ CampaignMember record\(s\) via sObject Collections"),
        (KEYED, r"^create \d+ CampaignMember record\(s\) via sObject Collections"),  # an upsert by external ID
        (bulk(PROFILE), r"^Bulk API 2.0 insert of \d+ CampaignMember record\(s\): create job$"),
        (bulk(PROFILE), r"^Bulk API 2.0 insert of \d+ CampaignMember record\(s\): upload$"),
        (bulk(PROFILE), r"^Bulk API 2.0 insert of \d+ CampaignMember record\(s\): close$"),
        (bulk(KEYED), r"^Bulk API 2.0 upsert of \d+ CampaignMember record\(s\): upload$"),
    ],
    ids=["collections-create", "collections-upsert", "bulk-create-job", "bulk-upload", "bulk-close", "bulk-upsert"],
)
def test_a_create_whose_answer_is_lost_converges_to_one_record_per_key(sandbox_org, profile, lose) -> None:
    sandbox_org.sync(statuses_for(AUDIENCE[:2]), profile)  # the Campaign and its statuses exist already
    statuses = statuses_for(AUDIENCE[:12])
    run_losing(sandbox_org, statuses, profile, lose)
    # Salesforce made what it was sent once; nothing was sent twice within the run.
    assert set(members_per_person(sandbox_org.org).values()) == {1}
    assert_one_member_per_person_after_rerun(sandbox_org, statuses, profile)


@pytest.mark.parametrize(
    "profile, lose",
    [
        (PROFILE, r"^update \d+ CampaignMember record\(s\) via sObject Collections"),
        (bulk(PROFILE), r"^Bulk API 2.0 update of \d+ CampaignMember record\(s\): upload$"),
    ],
    ids=["collections-update", "bulk-update-upload"],
)
def test_an_update_whose_answer_is_lost_lands_once_and_converges(sandbox_org, profile, lose) -> None:
    sandbox_org.sync(statuses_for(AUDIENCE[:12]), profile)
    clicked = statuses_for(AUDIENCE[:12], status="Clicked")
    run_losing(sandbox_org, clicked, profile, lose)
    assert_one_member_per_person_after_rerun(sandbox_org, clicked, profile)
    assert {m["Status"] for m in sandbox_org.org.records("CampaignMember")} == {"Clicked"}


def test_a_campaign_create_whose_answer_is_lost_is_adopted_not_doubled(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:3])
    run_losing(sandbox_org, statuses, PROFILE, r"^create 1 Campaign record\(s\) via sObject Collections")
    assert len(sandbox_org.org.records("Campaign")) == 1
    again = sandbox_org.sync(statuses)
    assert again.failures.empty, again.failures.to_dict("records")
    assert len(sandbox_org.org.records("Campaign")) == 1
    assert set(members_per_person(sandbox_org.org).values()) == {1}


def test_bulk_uploads_are_split_under_the_size_limit(sandbox_org) -> None:
    assert upload_splits("x" * 10, 5, max_bytes=100) == 1
    assert upload_splits("x" * 1000, 50, max_bytes=300) == 5
    profile = bulk(PROFILE)
    sandbox_org.sync(statuses_for(AUDIENCE[:2]), profile)
    statuses = statuses_for(AUDIENCE[:20])
    client = sandbox_org.client()
    desired = sandbox_org.desired(statuses, profile, client=client)
    report = sync_desired_records(client, sandbox_org.ledger, desired, profile.sync, max_upload_bytes=600)
    assert report.failures.empty, report.failures.to_dict("records")
    jobs = [call for call in sandbox_org.org.call_log if call[0] == "POST" and call[1].endswith("/jobs/ingest")]
    assert len(jobs) >= 2, "18 members over a 600-byte cap go as several jobs"
    assert set(members_per_person(sandbox_org.org).values()) == {1}
    assert len(members_per_person(sandbox_org.org)) == report.outcomes["campaign_member"].desired


def test_bulk_results_with_non_ascii_text_pair_back_and_converge(sandbox_org) -> None:
    """Bulk results are UTF-8 CSV without a charset; decoded as Latin-1 these rows never paired back."""
    profile = bulk(PROFILE)
    sandbox_org.sync(statuses_for(AUDIENCE[:2]), profile)
    statuses = statuses_for(AUDIENCE[:14], status="Clicked")
    statuses["last_clicked_url"] = [f"https://example.com/tomás-çelik/ünïcode-{n}" for n in range(len(statuses))]
    report = sandbox_org.sync(statuses, profile)
    assert report.outcomes["campaign_member"].api == "bulk"
    assert report.failures.empty, report.failures.to_dict("records")
    assert set(sandbox_org.ledger.load("campaign_member")["last_result"]) == {"ok"}
    assert sandbox_org.sync(statuses, profile).write_calls == 0
    urls = {m["Last_Clicked_URL__c"] for m in sandbox_org.org.records("CampaignMember")}
    assert "https://example.com/tomás-çelik/ünïcode-3" in urls
