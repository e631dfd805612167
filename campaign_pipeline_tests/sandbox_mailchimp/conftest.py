"""Fixtures for the Mailchimp sandbox tests: a small seeded account, a running sandbox, the real client on it."""

from __future__ import annotations

from collections.abc import Iterator

import mailchimp_marketing
import pytest

from campaign_pipeline.sandbox.mailchimp_api import MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount


@pytest.fixture
def account() -> SandboxAccount:
    return SandboxAccount(seed=11, n_members=600, n_regular_campaigns=3, n_automation_emails=2)


@pytest.fixture
def sandbox(account: SandboxAccount) -> Iterator[MailchimpSandbox]:
    with MailchimpSandbox(account) as running:
        yield running


@pytest.fixture
def client(sandbox: MailchimpSandbox) -> mailchimp_marketing.Client:
    return client_for(sandbox)


def client_for(sandbox: MailchimpSandbox, api_key: str | None = None) -> mailchimp_marketing.Client:
    """The real mailchimp-marketing client, pointed at the sandbox the way the pipeline's tests do it."""
    real_client = mailchimp_marketing.Client()
    real_client.set_config({"api_key": api_key or sandbox.api_key, "timeout": 30})
    real_client.api_client.host = sandbox.base_url
    return real_client
