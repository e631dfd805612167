"""The `campaign-pipeline sandbox` commands that serve and measure the sandbox APIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests
import sqlalchemy as sa
from click.testing import CliRunner
from simple_salesforce import Salesforce

from campaign_pipeline.cli import main


def test_bench_salesforce_prints_its_figures_as_json(pg_engine: sa.Engine) -> None:
    result = CliRunner().invoke(main, ["sandbox", "bench-salesforce", "--members", "40", "--tasks-per-member", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["members"] == figures["members_read"] == 40
    assert figures["tasks"] == 40
    assert figures["member_failures"] == figures["task_failures"] == 0
    assert figures["api_calls"] > 0


def test_serve_salesforce_serves_an_org_the_real_client_can_use(pg_engine: sa.Engine) -> None:
    command = [sys.executable, "-m", "campaign_pipeline.cli", "sandbox", "serve-salesforce", "--schema", "sandbox_cli"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert server.stdout is not None
        connection = json.loads(server.stdout.readline())
        session = requests.Session()
        session.verify = connection["ca_path"]
        session.trust_env = False
        sf = Salesforce(
            instance_url=connection["instance_url"],
            session_id=connection["session_id"],
            session=session,
            version=connection["api_version"],
        )
        created = sf.Campaign.create({"Name": "Served by the CLI"})
        assert sf.Campaign.get(created["id"])["Name"] == "Served by the CLI"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_state_path_without_a_seed() -> None:
    result = CliRunner().invoke(main, ["sandbox", "serve", "--state-path", "x.json"])
    assert result.exit_code == 2
    assert "--state-path goes with --seed" in result.output
