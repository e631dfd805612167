"""The one rule that picks live or sandbox resources, and credentials that survive run config."""

from __future__ import annotations

import dagster as dg
import pytest

from campaign_pipeline.definitions import build_definitions
from campaign_pipeline.deployment import DeploymentConfigError, choose_deployment
from campaign_pipeline.mailchimp.assets import mailchimp_campaign_report
from campaign_pipeline.mailchimp.live import LiveMailchimpResource
from campaign_pipeline.mailchimp.partitions import mailchimp_campaigns
from campaign_pipeline.mailchimp.resource import MailchimpResource
from campaign_pipeline.profile import default_profile
from campaign_pipeline.salesforce.live import LiveSalesforceResource
from campaign_pipeline.salesforce.resource import SalesforceResource
from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline.sandbox.resources import SandboxMailchimpResource, SandboxSalesforceResource
from campaign_pipeline.stores import store_resources

CREDENTIAL_VARIABLES = (
    "MAILCHIMP_API_KEY",
    "MAILCHIMP_BASE_URL",
    "CAMPAIGN_PIPELINE_TARGET",
    *(
        f"SALESFORCE_{name}"
        for name in (
            "USERNAME",
            "PASSWORD",
            "SECURITY_TOKEN",
            "CONSUMER_KEY",
            "PRIVATE_KEY_FILE",
            "PRIVATE_KEY",
            "INSTANCE_URL",
            "SESSION_ID",
            "DOMAIN",
        )
    ),
)


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_without_credentials_both_are_sandboxes_and_with_them_both_are_live(monkeypatch):
    sandbox = choose_deployment()
    assert isinstance(sandbox.mailchimp, SandboxMailchimpResource)
    assert isinstance(sandbox.salesforce, SandboxSalesforceResource)
    monkeypatch.setenv("MAILCHIMP_API_KEY", "0123456789abcdef-us21")
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://example.my.salesforce.com")
    monkeypatch.setenv("SALESFORCE_SESSION_ID", "00D000000000001!secret")
    live = choose_deployment()
    assert isinstance(live.mailchimp, LiveMailchimpResource)
    assert isinstance(live.salesforce, LiveSalesforceResource)
    assert "secret" not in live.description and "0123456789abcdef" not in live.description
    monkeypatch.setenv("CAMPAIGN_PIPELINE_TARGET", "sandbox")
    forced = choose_deployment()
    assert isinstance(forced.mailchimp, SandboxMailchimpResource)
    assert isinstance(forced.salesforce, SandboxSalesforceResource)


def test_target_live_refuses_missing_credentials_instead_of_falling_back(monkeypatch):
    monkeypatch.setenv("CAMPAIGN_PIPELINE_TARGET", "live")
    monkeypatch.setenv("MAILCHIMP_API_KEY", "0123456789abcdef-us21")
    with pytest.raises(DeploymentConfigError, match="CAMPAIGN_PIPELINE_TARGET=live but a SALESFORCE_\\* login"):
        choose_deployment()
    monkeypatch.setenv("CAMPAIGN_PIPELINE_TARGET", "staging")
    with pytest.raises(DeploymentConfigError, match="not one of live, sandbox"):
        choose_deployment()


def test_a_base_url_without_a_key_is_refused_so_the_sandbox_key_never_leaves(monkeypatch):
    monkeypatch.setenv("MAILCHIMP_BASE_URL", "https://proxy.example.com/3.0")
    with pytest.raises(DeploymentConfigError, match="MAILCHIMP_BASE_URL is set but MAILCHIMP_API_KEY is not"):
        choose_deployment()


def test_run_config_for_page_size_keeps_the_live_key_and_base_url(tmp_path, monkeypatch, dagster_instance):
    """The regression of the issue: run config for resources.mailchimp used to drop the key (source = sandbox)."""
    account = SandboxAccount(seed=21, n_members=300, state_path=tmp_path / "live_account.json")
    campaign_id = account.campaign_ids()[0]
    with MailchimpSandbox(account) as live_stand_in:
        monkeypatch.setenv("MAILCHIMP_API_KEY", live_stand_in.api_key)
        monkeypatch.setenv("MAILCHIMP_BASE_URL", live_stand_in.base_url)
        defs = build_definitions(default_profile())
        dagster_instance.add_dynamic_partitions(mailchimp_campaigns.name, [campaign_id])
        result = dg.materialize(
            [mailchimp_campaign_report],
            instance=dagster_instance,
            partition_key=campaign_id,
            resources={"mailchimp": defs.resources["mailchimp"], "io_manager": dg.mem_io_manager, **store_resources()},
            run_config={"resources": {"mailchimp": {"config": {"page_size": 7, "filter_bots": True}}}},
        )
        served = [path for _, path, _, _ in live_stand_in.request_log]
    assert result.success
    [materialization] = result.asset_materializations_for_node("mailchimp_campaign_report")
    source = materialization.metadata["mailchimp_source"].value
    assert "Mailchimp API" in source and "MAILCHIMP_BASE_URL" in source and "SANDBOX" not in source
    # The report came from the host MAILCHIMP_BASE_URL names, with the key MAILCHIMP_API_KEY holds.
    assert any(path.endswith(f"/reports/{campaign_id}") for path in served)


def test_run_config_for_timeouts_keeps_the_salesforce_login(monkeypatch):
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://example.my.salesforce.com")
    monkeypatch.setenv("SALESFORCE_SESSION_ID", "00D000000000001!secret")
    seen: dict[str, object] = {}

    @dg.asset
    def probe(salesforce: SalesforceResource, mailchimp: MailchimpResource) -> None:
        assert isinstance(salesforce, LiveSalesforceResource)
        seen["session"] = salesforce.credentials.session_id
        seen["timeout"] = salesforce.timeout_seconds
        seen["mailchimp"] = type(mailchimp).__name__

    deployment = choose_deployment()
    result = dg.materialize(
        [probe],
        resources={"salesforce": deployment.salesforce, "mailchimp": deployment.mailchimp, **store_resources()},
        run_config={"resources": {"salesforce": {"config": {"timeout_seconds": 5.0}}}},
    )
    assert result.success
    assert seen == {"session": "00D000000000001!secret", "timeout": 5.0, "mailchimp": "SandboxMailchimpResource"}
