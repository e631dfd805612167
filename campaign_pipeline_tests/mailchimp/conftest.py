"""Fixtures for the Mailchimp side: a small sandbox account served over loopback, and a resource on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaign_pipeline.mailchimp.live import LiveMailchimpResource, MailchimpConnection
from campaign_pipeline.sandbox.mailchimp_api import MailchimpFaults, MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

SMALL_AUDIENCE = 1_200


@pytest.fixture
def account(tmp_path) -> SandboxAccount:
    return SandboxAccount(seed=11, n_members=SMALL_AUDIENCE, state_path=tmp_path / "mailchimp_state.json")


@pytest.fixture
def sandbox(account: SandboxAccount) -> Iterator[MailchimpSandbox]:
    with MailchimpSandbox(account, faults=MailchimpFaults(seed=3)) as served:
        yield served


def resource_on(served: MailchimpSandbox, **overrides) -> LiveMailchimpResource:
    """The live resource (real client, real HTTP) pointed at a sandbox, with millisecond backoff for tests."""
    connection = MailchimpConnection(
        api_key=overrides.pop("api_key", served.api_key), base_url=overrides.pop("base_url", served.base_url)
    )
    settings = {
        "connection": connection,
        "page_size": 250,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.01,
        "timeout_seconds": 5.0,
    }
    settings.update(overrides)
    return LiveMailchimpResource(**settings)


@pytest.fixture
def make_resource():
    return resource_on


@pytest.fixture
def mailchimp(sandbox: MailchimpSandbox) -> LiveMailchimpResource:
    return resource_on(sandbox)
