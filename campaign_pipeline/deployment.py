"""Which Mailchimp account and Salesforce org a deployment uses: the one rule that picks live or sandbox resources.

The rule, read when Definitions are built and shown in the job's description:

* ``CAMPAIGN_PIPELINE_TARGET=live``: both systems are live; a missing credential is an error at load, so a
  production deployment can never fall back to the sandboxes.
* ``CAMPAIGN_PIPELINE_TARGET=sandbox``: both are the sandboxes, whatever credentials are set.
* unset: each system is live when its credentials are set (``MAILCHIMP_API_KEY``; a ``SALESFORCE_*`` login),
  else its sandbox.

Live credentials are bound with ``dg.EnvVar`` inside nested resources, so run config for any other field keeps
them. This module (with the CLI) is the only production code that imports ``campaign_pipeline.sandbox``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
from campaign_pipeline.mailchimp.resource import API_KEY_ENV, BASE_URL_ENV, MailchimpResource
from campaign_pipeline.salesforce.live import (
    CREDENTIAL_FIELDS,
    LiveSalesforceResource,
    SalesforceCredentials,
    login_method,
)
from campaign_pipeline.salesforce.resource import SalesforceResource

TARGET_ENV = "CAMPAIGN_PIPELINE_TARGET"
TARGETS = ("live", "sandbox")


class DeploymentConfigError(ValueError):
    """The deployment settings contradict each other; the message names the variables."""


@dataclass(frozen=True)
class Deployment:
    mailchimp: MailchimpResource
    salesforce: SalesforceResource

    @property
    def description(self) -> str:
        return f"{self.mailchimp.source_description}. {self.salesforce.describe_target()}."


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def deployment_target() -> str | None:
    target = _env(TARGET_ENV).lower()
    if target and target not in TARGETS:
        raise DeploymentConfigError(f"{TARGET_ENV}={target!r} is not one of {', '.join(TARGETS)} (or unset)")
    return target or None


def _salesforce_credentials() -> SalesforceCredentials:
    """Every SALESFORCE_* variable that is set, bound by name (an unset dg.EnvVar would fail at load)."""
    bound = {
        name: dg.EnvVar(f"SALESFORCE_{name.upper()}")
        for name in CREDENTIAL_FIELDS
        if _env(f"SALESFORCE_{name.upper()}")
    }
    return SalesforceCredentials(**bound)


def _salesforce_credentials_set() -> bool:
    values = {name: _env(f"SALESFORCE_{name.upper()}") or None for name in CREDENTIAL_FIELDS}
    # Raises on an incomplete set, naming what is missing.
    return login_method(SalesforceCredentials(**values)) is not None


def live_mailchimp(filter_bots: bool = False) -> LiveMailchimpResource:
    connection = MailchimpConnection(
        api_key=dg.EnvVar(API_KEY_ENV), base_url=dg.EnvVar(BASE_URL_ENV) if _env(BASE_URL_ENV) else None
    )
    return LiveMailchimpResource(connection=connection, filter_bots=filter_bots)


def choose_deployment(filter_bots: bool = False) -> Deployment:
    """The resources under keys "mailchimp" and "salesforce", by the rule in the module docstring.

    ``filter_bots`` (the profiles' mailchimp.filter_bots) is deployment-wide: landed events are shared.
    """
    from campaign_pipeline.sandbox.resources import SandboxMailchimpResource, SandboxSalesforceResource

    target = deployment_target()
    has_key = bool(_env(API_KEY_ENV))
    has_login = _salesforce_credentials_set()
    if target == "live":
        missing = ([API_KEY_ENV] if not has_key else []) + (["a SALESFORCE_* login"] if not has_login else [])
        if missing:
            raise DeploymentConfigError(
                f"{TARGET_ENV}=live but {' and '.join(missing)} is not set; set it, or unset {TARGET_ENV} "
                "to use the sandboxes"
            )
    live_source = has_key and target != "sandbox"
    live_target = has_login and target != "sandbox"
    if not live_source and _env(BASE_URL_ENV) and target != "sandbox":
        raise DeploymentConfigError(
            f"{BASE_URL_ENV} is set but {API_KEY_ENV} is not: the sandbox key is never sent to another host; "
            f"set {API_KEY_ENV} or unset {BASE_URL_ENV}"
        )
    mailchimp: MailchimpResource = (
        live_mailchimp(filter_bots) if live_source else SandboxMailchimpResource(filter_bots=filter_bots)
    )
    salesforce: SalesforceResource = (
        LiveSalesforceResource(credentials=_salesforce_credentials()) if live_target else SandboxSalesforceResource()
    )
    return Deployment(mailchimp=mailchimp, salesforce=salesforce)
