"""Faults set from outside a run process (CAMPAIGN_PIPELINE_SANDBOX_FAULTS) act on the requests they name."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from simple_salesforce.exceptions import SalesforceGeneralError

from campaign_pipeline.sandbox.fault_plan import FAULT_LOG_ENV, FAULTS_ENV, FaultPlan
from campaign_pipeline.sandbox.mailchimp_api import MailchimpFaults
from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox

SCHEMA = "sandbox_salesforce_fault_knobs"
CREATE = {"method": "POST", "path": r"^/composite/sobjects/?$"}


def _records(n: int) -> dict:
    return {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "LastName": f"L{i}"} for i in range(n)]}


def test_settings_set_the_named_faults_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"mailchimp": {"rate_429_empty": 0.25, "max_connections": 2}}))
    faults = FaultPlan.from_env("mailchimp").apply_settings(MailchimpFaults())
    assert (faults.rate_429_empty, faults.max_connections) == (0.25, 2)
    assert FaultPlan.from_env("salesforce").apply_settings(SalesforceFaults()) == SalesforceFaults()
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"salesforce": {"lose_everything": 1}}))
    with pytest.raises(ValueError, match="lose_everything"):
        FaultPlan.from_env("salesforce").apply_settings(SalesforceFaults())


def test_a_lost_answer_on_one_path_commits_the_write_answers_504_and_is_logged(pg_engine, monkeypatch, tmp_path):
    log = tmp_path / "faults.jsonl"
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"salesforce": {"lose_answers_on": [{**CREATE, "count": 1}]}}))
    monkeypatch.setenv(FAULT_LOG_ENV, str(log))
    with SalesforceSandbox(pg_engine, schema=SCHEMA) as org:
        org.reset()
        sf = org.client()
        sf.query("SELECT Id FROM Contact")  # a read on another path: untouched
        with pytest.raises(SalesforceGeneralError) as lost:
            sf.restful("composite/sobjects", method="POST", json=_records(3))
        assert lost.value.status == 504
        assert len(org.records("Contact")) == 3, "the write was committed before its answer was lost"
        results = sf.restful("composite/sobjects", method="POST", json=_records(2))  # only one answer is lost
        assert all(r["success"] for r in results)
    fired = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(f["fault"], f["method"], f["path"]) for f in fired] == [("lose_answers_on", "POST", "/composite/sobjects")]


CRASHING_CHILD = """
import json, sys
from campaign_pipeline.storage.database import get_engine
from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
with SalesforceSandbox(get_engine(), schema=sys.argv[1]) as org:
    org.reset()
    sf = org.client()
    for batch in range(3):
        sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "LastName": f"B{batch}-{i}"} for i in range(2)]})
        print(batch, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("when", "committed_batches"), [("before", 1), ("after", 2)])
def test_crash_on_the_nth_request_sigkills_the_process_before_or_after_the_work(
    pg_engine, pg_url, monkeypatch, tmp_path, when, committed_batches
):
    rule = {**CREATE, "when": when, "nth": 2}
    env = {
        **dict(__import__("os").environ),
        FAULTS_ENV: json.dumps({"salesforce": {"crash_on": [rule]}}),
        FAULT_LOG_ENV: str(tmp_path / "log"),
    }
    schema = f"{SCHEMA}_{when}"
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, schema], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert child.stdout.split() == ["0"]  # the second batch never got its answer
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    with SalesforceSandbox(pg_engine, schema=schema) as org:
        assert len(org.records("Contact")) == 2 * committed_batches
