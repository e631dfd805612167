"""A preview of kinds upserted by an external ID: a record the org holds but the ledger does not know (a lost
answer, a ledger rebuilt) is counted as the update the real run's upsert makes, at one read per chunk of keys."""

from __future__ import annotations

import sqlalchemy as sa

from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session

from .conftest import AUDIENCE, statuses_for

CAMPAIGN_KEY, MEMBER_KEY = "Mailchimp_Campaign_Id__c", "Mailchimp_Key__c"
PROFILE = SyncProfile.model_validate(
    {"field_mapping": {"campaign_key_field": CAMPAIGN_KEY, "campaign_member_key_field": MEMBER_KEY}}
)
PREVIEW = PROFILE.model_copy(update={"sync": PROFILE.sync.model_copy(update={"preview_only": True})})
SOBJECTS = ("Campaign", "CampaignMemberStatus", "CampaignMember")


class QueryRecordingClient(SalesforceClient):
    """The real client, noting each SOQL query it sends."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queries: list[str] = []

    def query_all(self, soql: str, *, include_deleted: bool = False) -> list[dict]:
        self.queries.append(soql)
        return super().query_all(soql, include_deleted=include_deleted)


def _client(sandbox_org) -> QueryRecordingClient:
    return QueryRecordingClient(
        sandbox_org.org.client(),
        target="Salesforce target: SANDBOX org (test)",
        is_sandbox=True,
        reauthenticate=lambda: sandbox_session(sandbox_org.org),
        backoff_seconds=0.0,
    )


def _by_external_id(client: QueryRecordingClient) -> dict[str, int]:
    """How many queries asked for records by each external-ID field."""
    return {field: sum(f"WHERE {field} IN" in soql for soql in client.queries) for field in (CAMPAIGN_KEY, MEMBER_KEY)}


def test_preview_counts_an_upsert_of_a_record_the_ledger_lost_as_an_update(sandbox_org, pg_engine) -> None:
    statuses = statuses_for(AUDIENCE[:8])
    first = sandbox_org.sync(statuses, PROFILE)
    members_made = first.outcomes["campaign_member"].created
    assert first.failures.empty and members_made > 0
    org_before = {sobject: len(sandbox_org.org.records(sobject)) for sobject in SOBJECTS}

    # The ledger is rebuilt empty, but the org keeps every record: the preview asks the org by external id.
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {sandbox_org.ledger._qualified}"))
    client = _client(sandbox_org)
    preview = sandbox_org.sync(statuses, PREVIEW, client=client)
    assert preview.write_calls == 0
    assert {sobject: len(sandbox_org.org.records(sobject)) for sobject in SOBJECTS} == org_before
    assert sandbox_org.ledger.load("campaign").empty
    # One read-only query per kind with an external id (a few member keys fit one query under the URI limit).
    assert _by_external_id(client) == {CAMPAIGN_KEY: 1, MEMBER_KEY: 1}
    campaign, members = preview.outcomes["campaign"], preview.outcomes["campaign_member"]
    assert (campaign.to_create, campaign.to_update) == (0, 1)
    assert (members.to_create, members.to_update) == (0, members_made)
    # The statuses hang on the Campaign the org has: found by their label under it, nothing to create.
    assert preview.outcomes["campaign_member_status"].to_create == 0
    assert preview.total("to_fail") == 0

    real = sandbox_org.sync(statuses, PROFILE)
    for name, planned in preview.outcomes.items():
        done = real.outcomes[name]
        assert (planned.to_create, planned.to_update, planned.unchanged, planned.to_fail) == (
            done.created,
            done.updated,
            done.unchanged,
            done.failed,
        ), name
    assert {sobject: len(sandbox_org.org.records(sobject)) for sobject in SOBJECTS} == org_before

    # With the ledger whole again, a preview asks nothing by external id: every row has its Id.
    again = _client(sandbox_org)
    quiet = sandbox_org.sync(statuses, PREVIEW, client=again)
    assert _by_external_id(again) == {CAMPAIGN_KEY: 0, MEMBER_KEY: 0}
    assert quiet.total("to_create") == quiet.total("to_update") == 0


def test_preview_still_counts_creates_for_external_ids_the_org_does_not_hold(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:4])
    client = _client(sandbox_org)
    preview = sandbox_org.sync(statuses, PREVIEW, client=client)
    # The Campaign is asked about; its members are not: nothing can hang on a Campaign this run would create.
    assert _by_external_id(client) == {CAMPAIGN_KEY: 1, MEMBER_KEY: 0}
    planned = preview.outcomes["campaign_member"].to_create
    assert preview.outcomes["campaign"].to_create == 1 and planned > 0
    real = sandbox_org.sync(statuses, PROFILE)
    assert real.outcomes["campaign"].created == 1 and real.outcomes["campaign_member"].created == planned
