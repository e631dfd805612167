"""The Salesforce assets in Dagster: materialised with stand-in upstream assets, the Postgres IO manager and the sandbox org."""

from __future__ import annotations

import uuid
from typing import ClassVar

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.deployment import choose_deployment
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.defs import salesforce_assets
from campaign_pipeline.salesforce.ledger import LEDGER_TABLE
from campaign_pipeline.salesforce.live import LiveSalesforceResource
from campaign_pipeline.salesforce.resource import SANDBOX_TARGET
from campaign_pipeline.salesforce.sync_metadata import PREVIEW_TAG
from campaign_pipeline.sandbox.resources import SandboxSalesforceResource
from campaign_pipeline.storage.database import get_engine
from campaign_pipeline.storage.io_manager import PostgresPandasIOManager
from campaign_pipeline.stores import SYNC_LEDGER_KEY, SyncLedgerResource, store_resources
from campaign_pipeline_tests.metadata import materialization_metadata

from .frames import campaign_report, campaign_totals, member_statuses

CAMPAIGN = "cmpA"


def _stand_ins(statuses: pd.DataFrame, report: pd.DataFrame) -> list[dg.AssetsDefinition]:
    @dg.asset(name="member_statuses", partitions_def=mailchimp_campaigns, metadata={"partition_expr": "campaign_id"})
    def member_statuses_stand_in() -> pd.DataFrame:
        return statuses

    @dg.asset(name="campaign_totals", partitions_def=mailchimp_campaigns, metadata={"partition_expr": "campaign_id"})
    def campaign_totals_stand_in() -> pd.DataFrame:
        return campaign_totals(statuses)

    @dg.asset(
        name="mailchimp_campaign_report", partitions_def=mailchimp_campaigns, metadata={"partition_expr": "campaign_id"}
    )
    def report_stand_in() -> pd.DataFrame:
        return report

    return [member_statuses_stand_in, campaign_totals_stand_in, report_stand_in]


@pytest.fixture
def sandbox_resource(pg_url) -> SandboxSalesforceResource:
    return SandboxSalesforceResource(sandbox_schema=f"sf_assets_{uuid.uuid4().hex[:8]}", backoff_seconds=0.0)


@pytest.fixture
def sync_ledger() -> SyncLedgerResource:
    """The stand-ins write the default schema: each test's ledger lives in its own, bound as the resource."""
    return SyncLedgerResource(schema_name=f"ledger_{uuid.uuid4().hex[:8]}")


def _materialize(assets, resource, instance, ledger: SyncLedgerResource, **tags: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=CAMPAIGN,
        instance=instance,
        tags=tags,
        resources={
            "io_manager": PostgresPandasIOManager(),
            "salesforce": resource,
            **store_resources(),
            SYNC_LEDGER_KEY: ledger,
        },
    )


@pytest.mark.slow
def test_campaign_mode_assets_sync_through_the_io_manager_and_resync_writes_nothing(
    sandbox_resource, dagster_instance, sync_ledger
) -> None:
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

    audience = SandboxAccount(seed=sandbox_resource.sandbox_seed).audience_emails()[:40]
    statuses = member_statuses(CAMPAIGN, dict.fromkeys(audience, "Opened"), exact=False)
    report = campaign_report(CAMPAIGN, campaign_type="automation")
    profile = SyncProfile.model_validate(
        {
            "field_mapping": {
                "campaign_member": {"total_opens": "Total_Opens__c", "last_clicked_url": "Last_Clicked_URL__c"}
            }
        }
    )
    assets = [*_stand_ins(statuses, report), *salesforce_assets(profile)]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])

    first = _materialize(assets, sandbox_resource, dagster_instance, sync_ledger)
    assert first.success
    sync_meta = _metadata(first, "salesforce_sync")
    assert sync_meta["salesforce_target"] == SANDBOX_TARGET and sync_meta["target"] == "salesforce:sandbox"
    matches = first.output_for_node("salesforce_matches", "salesforce_matches")
    assert sync_meta["created"] == 1 + 4 + len(matches)  # Campaign, its new statuses, a member per match
    assert sync_meta["failed"] == 0 and sync_meta["write_calls"] == 3
    assert "approximate" in sync_meta["note"]
    unmatched = first.output_for_node("salesforce_matches", "unmatched_members")
    assert len(matches) + len(unmatched) == len(statuses) and len(matches) > 0
    [check] = first.get_asset_check_evaluations()
    assert check.passed

    second = _materialize(assets, sandbox_resource, dagster_instance, sync_ledger)
    again = _metadata(second, "salesforce_sync")
    assert again["write_calls"] == 0 and again["unchanged"] == sync_meta["created"] + sync_meta["unchanged"]

    # Another org (here: the same emulator under another org id) never takes this org's ledger rows: its run
    # starts from nothing, finds what exists by lookups, and keeps rows of its own.
    other = OtherOrg(sandbox_schema=sandbox_resource.sandbox_schema, backoff_seconds=0.0)
    third = _metadata(_materialize(assets, other, dagster_instance, sync_ledger), "salesforce_sync")
    assert third["target"] == OtherOrg.IDENTITY and third["write_calls"] > 0 and third["failed"] == 0
    owners = sync_ledger.open().owners()
    targets = dict(zip(owners["target"], owners["rows"], strict=True))
    keys = sync_meta["created"] + sync_meta["unchanged"]
    assert targets == {"salesforce:sandbox": keys, OtherOrg.IDENTITY: keys}


@pytest.mark.slow
def test_campaign_totals_mode_has_only_campaign_assets_and_preview_writes_nothing(
    sandbox_resource, dagster_instance, sync_ledger
) -> None:
    statuses = member_statuses(CAMPAIGN, {"a@example.com": "Clicked", "b@example.com": "Sent"})
    profile = SyncProfile.model_validate(
        {
            "mode": "campaign_totals",
            "field_mapping": {"campaign": {"open_rate": "Open_Rate__c"}},
            "sync": {"preview_only": True},
        }
    )
    sf_assets = salesforce_assets(profile)
    assert {key.to_user_string() for a in sf_assets for key in a.keys} == {
        "sf_parent_campaigns",
        "sf_campaign",
        "salesforce_sync",
    }
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])
    result = _materialize(
        [*_stand_ins(statuses, campaign_report(CAMPAIGN)), *sf_assets], sandbox_resource, dagster_instance, sync_ledger
    )
    meta = _metadata(result, "salesforce_sync")
    assert meta["preview_only"] is True and meta["write_calls"] == 0
    assert meta["would_create"] == 1 and [row["action"] for row in meta["changes"]] == ["create"]


@pytest.mark.slow
def test_leads_for_unmatched_members_are_created_by_the_push_not_by_matching(
    sandbox_resource, dagster_instance, sync_ledger
) -> None:
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

    known = SandboxAccount(seed=sandbox_resource.sandbox_seed).audience_emails()[:3]
    newcomers = ["newcomer@example.org", "Second.New@example.org"]
    statuses = member_statuses(CAMPAIGN, dict.fromkeys([*known, *newcomers], "Opened"))
    profile = SyncProfile.model_validate({"matching": {"create_leads_for_unmatched": True}})
    push = next(a for a in salesforce_assets(profile) if dg.AssetKey("salesforce_sync") in a.keys)
    # The push reads unmatched_members (and member_statuses, to build the new Leads' members) only with the option.
    assert {key.to_user_string() for key in push.dependency_keys} == {
        "sf_parent_campaigns",
        "sf_campaign",
        "sf_campaign_members",
        "unmatched_members",
        "member_statuses",
    }
    assets = [*_stand_ins(statuses, campaign_report(CAMPAIGN)), *salesforce_assets(profile)]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])

    first = _materialize(assets, sandbox_resource, dagster_instance, sync_ledger)
    assert first.success
    matching = _metadata(first, "salesforce_matches")
    unmatched = first.output_for_node("salesforce_matches", "unmatched_members")
    assert matching["would_become_leads"] == len(unmatched) >= 2
    assert {"newcomer@example.org", "Second.New@example.org"} <= set(unmatched["email_address"])
    pushed = _metadata(first, "salesforce_sync")
    per_kind = pushed["per_kind"]
    assert per_kind["lead"]["created"] == len(unmatched) and pushed["failed"] == 0
    # Every member, old match or new Lead, is a CampaignMember after the one run.
    assert per_kind["campaign_member"]["created"] == len(statuses)

    second = _materialize(assets, sandbox_resource, dagster_instance, sync_ledger)
    assert _metadata(second, "salesforce_matches")["would_become_leads"] == 0
    again = _metadata(second, "salesforce_sync")
    assert again["write_calls"] == 0 and again["failed"] == 0


@pytest.mark.slow
def test_a_preview_that_would_create_leads_counts_them_and_their_members_and_writes_nothing(
    sandbox_resource, dagster_instance, sync_ledger
) -> None:
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
    from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox

    known = SandboxAccount(seed=sandbox_resource.sandbox_seed).audience_emails()[:5]
    newcomers = ["first.newcomer@example.org", "Second.Newcomer@example.org", "third@example.net"]
    statuses = member_statuses(CAMPAIGN, dict.fromkeys([*known, *newcomers], "Clicked"))
    profile = SyncProfile.model_validate({"matching": {"create_leads_for_unmatched": True}})
    assets = [*_stand_ins(statuses, campaign_report(CAMPAIGN)), *salesforce_assets(profile)]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])

    def org_state() -> dict[str, list[str]]:
        with SalesforceSandbox(schema=sandbox_resource.sandbox_schema) as org:
            return {sobject: sorted(r["Id"] for r in org.records(sobject)) for sobject in ("Lead", "CampaignMember")}

    def ledger_keys(kind: str | None = None) -> set[str]:
        """The ledger's sync keys (of one kind), whatever their account and org."""
        with get_engine().connect() as conn:
            return set(
                conn.execute(
                    sa.text(
                        f'SELECT sync_key FROM "{sync_ledger.schema_name}"."{LEDGER_TABLE}"'
                        " WHERE object_kind = coalesce(:kind, object_kind)"
                    ),
                    {"kind": kind},
                ).scalars()
            )

    with sandbox_resource.open_client():
        pass  # the org is seeded with its people on first use
    before = org_state()
    preview = _materialize(assets, sandbox_resource, dagster_instance, sync_ledger, **{PREVIEW_TAG: "true"})
    assert preview.success
    unmatched = preview.output_for_node("salesforce_matches", "unmatched_members")
    assert {email.lower() for email in newcomers} <= set(unmatched["email_address"].str.lower())
    said = _metadata(preview, "salesforce_sync")
    assert said["preview_only"] is True and said["write_calls"] == 0
    # Nothing written: not a Lead, not a member, not one ledger row.
    assert org_state() == before and ledger_keys() == set()
    planned = said["per_kind"]
    # Every unmatched member would become a Lead, and every member (old match or new Lead) a CampaignMember.
    assert planned["lead"]["would_create"] == len(unmatched) and planned["lead"]["would_fail"] == 0
    assert planned["campaign_member"]["would_create"] == len(statuses)
    assert said["would_fail"] == 0 and said["would_create"] == 1 + 4 + len(unmatched) + len(statuses)
    planned_leads = {row["sync_key"] for row in said["changes"] if row["object_kind"] == "lead"}
    assert planned_leads == set("lead|" + unmatched["email_id"])
    [check] = preview.get_asset_check_evaluations()
    assert check.passed

    real = _materialize(assets, sandbox_resource, dagster_instance, sync_ledger)
    done = _metadata(real, "salesforce_sync")
    # The next real run writes exactly what the preview said, kind by kind.
    for kind, counts in planned.items():
        assert (counts["would_create"], counts["would_update"], counts["would_skip"], counts["would_fail"]) == (
            done["per_kind"][kind]["created"],
            done["per_kind"][kind]["updated"],
            done["per_kind"][kind]["unchanged"],
            done["per_kind"][kind]["failed"],
        ), kind
    after = org_state()
    assert len(after["Lead"]) == len(before["Lead"]) + len(unmatched)
    assert len(after["CampaignMember"]) == len(statuses)
    assert ledger_keys("lead") == planned_leads


def test_resources_use_the_sandbox_without_credentials_and_never_echo_secrets(monkeypatch) -> None:
    for name in ("USERNAME", "PASSWORD", "SECURITY_TOKEN", "INSTANCE_URL", "SESSION_ID", "CONSUMER_KEY", "DOMAIN"):
        monkeypatch.delenv(f"SALESFORCE_{name}", raising=False)
    assert choose_deployment().salesforce.describe_target() == SANDBOX_TARGET
    monkeypatch.setenv("SALESFORCE_USERNAME", "ops@example.com")
    monkeypatch.setenv("SALESFORCE_PASSWORD", "hunter2-secret")
    live = choose_deployment().salesforce
    assert isinstance(live, LiveSalesforceResource) and live.login_method() == "password"
    assert "hunter2" not in live.describe_target() and "hunter2" not in repr(live)
    monkeypatch.delenv("SALESFORCE_PASSWORD")
    monkeypatch.setenv("SALESFORCE_SESSION_ID", "00Dsecret-session")
    with pytest.raises(dg.DagsterInvalidConfigError, match="SALESFORCE_INSTANCE_URL") as error:
        choose_deployment()
    assert "00Dsecret" not in str(error.value)


class OtherOrg(SandboxSalesforceResource):
    """The sandbox emulator presenting itself as another org (another org id)."""

    IDENTITY: ClassVar[str] = "salesforce:00D5g00000OTHER"

    def org_identity(self, client) -> str:
        return self.IDENTITY

    def state_identity(self) -> str:
        return self.IDENTITY


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return materialization_metadata(result, asset)


@pytest.mark.slow
def test_salesforce_matches_reports_person_accounts_and_the_push_puts_members_on_them(
    pg_url, dagster_instance, sync_ledger
) -> None:
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
    from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox

    resource = SandboxSalesforceResource(
        sandbox_schema=f"sf_assets_person_{uuid.uuid4().hex[:8]}", backoff_seconds=0.0, sandbox_person_account_share=0.3
    )
    audience = SandboxAccount(seed=resource.sandbox_seed).audience_emails()[:60]
    statuses = member_statuses(CAMPAIGN, dict.fromkeys(audience, "Opened"))
    assets = [*_stand_ins(statuses, campaign_report(CAMPAIGN)), *salesforce_assets(SyncProfile())]
    dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [CAMPAIGN])

    first = _materialize(assets, resource, dagster_instance, sync_ledger)
    assert first.success
    matching = _metadata(first, "salesforce_matches")
    with SalesforceSandbox(schema=resource.sandbox_schema) as org:
        accounts = {a["PersonContactId"]: a["Id"] for a in org.records("Account") if a.get("IsPersonAccount")}
        members = org.records("CampaignMember")
    matches = first.output_for_node("salesforce_matches", "salesforce_matches")
    on_people = matches[matches["salesforce_id"].isin(list(accounts))]
    assert matching["person_accounts"] == len(on_people) > 0
    assert matching["contacts"] == int((matches["salesforce_object"] == "Contact").sum()) >= len(on_people)
    # Each matched person account's member is on its person contact, with the person account as its Account.
    by_contact = {m["ContactId"]: m for m in members if m.get("ContactId")}
    assert {by_contact[contact]["AccountId"] for contact in on_people["salesforce_id"]} == {
        accounts[contact] for contact in on_people["salesforce_id"]
    }

    second = _materialize(assets, resource, dagster_instance, sync_ledger)
    assert _metadata(second, "salesforce_matches")["person_accounts"] == len(on_people)
    assert _metadata(second, "salesforce_sync")["write_calls"] == 0
