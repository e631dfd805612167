"""An sObject is described once per run: the run's steps share their resource's describes; the next run asks again."""

from __future__ import annotations

import uuid

import dagster as dg

from campaign_pipeline.salesforce.resource import SalesforceResource
from campaign_pipeline.sandbox.resources import SandboxSalesforceResource


def test_steps_of_one_run_share_describes_and_each_run_describes_afresh(pg_url, dagster_instance) -> None:
    resource = SandboxSalesforceResource(sandbox_schema=f"sf_describe_{uuid.uuid4().hex[:8]}", backoff_seconds=0.0)
    reads: list[tuple[str, int]] = []

    def describe_contact(step: str, salesforce: SalesforceResource) -> None:
        with salesforce.open_client() as client:
            fields = {entry["name"] for entry in client.describe("Contact")["fields"]}
            client.describe("Contact")  # the same client never asks twice either
            assert "Email" in fields
            reads.append((step, client.stats.calls["read"]))

    @dg.asset
    def first_step(salesforce: SalesforceResource) -> None:
        describe_contact("first", salesforce)

    @dg.asset(deps=[first_step])
    def second_step(salesforce: SalesforceResource) -> None:
        describe_contact("second", salesforce)

    for _ in range(2):
        result = dg.materialize(
            [first_step, second_step], resources={"salesforce": resource}, instance=dagster_instance
        )
        assert result.success
    assert reads == [("first", 1), ("second", 0), ("first", 1), ("second", 0)]
