"""Clear failures: an unreachable org names SALESFORCE_DOMAIN and the variables in use; a lost session stops the run."""

from __future__ import annotations

import socket

import pytest

from campaign_pipeline.salesforce.engine import sync_desired_records
from campaign_pipeline.salesforce.live import LiveSalesforceResource, SalesforceCredentials
from campaign_pipeline.salesforce.resource import SalesforceLoginFailed

from .conftest import AUDIENCE, PROFILE, statuses_for


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released), so a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_password_login_that_cannot_reach_salesforce_names_the_domain_and_variables_not_secrets() -> None:
    # The domain makes simple-salesforce log in at https://127.0.0.1:<closed>/.salesforce.com/...: refused at once.
    domain = f"127.0.0.1:{closed_port()}/"
    resource = LiveSalesforceResource(
        credentials=SalesforceCredentials(
            username="ops@example.com", password="hunter2-secret", security_token="tok-secret", domain=domain
        ),
        max_retries=1,
        backoff_seconds=0.0,
    )
    with pytest.raises(SalesforceLoginFailed) as failure:
        resource.check_login()
    message = str(failure.value)
    assert f"SALESFORCE_DOMAIN={domain}" in message and "cannot reach Salesforce" in message
    assert "SALESFORCE_USERNAME, SALESFORCE_PASSWORD, SALESFORCE_SECURITY_TOKEN, SALESFORCE_DOMAIN" in message
    assert "hunter2" not in message and "tok-secret" not in message and "ops@example.com" not in message
    assert failure.value.__cause__ is None  # no raw requests.ConnectionError chained into the traceback


def test_a_session_login_to_an_unreachable_instance_names_the_instance_url() -> None:
    instance = f"https://127.0.0.1:{closed_port()}"
    resource = LiveSalesforceResource(
        credentials=SalesforceCredentials(instance_url=instance, session_id="00D000000000001!secret-token"),
        max_retries=1,
        backoff_seconds=0.0,
    )
    with pytest.raises(SalesforceLoginFailed) as failure:
        resource.check_login()
    message = str(failure.value)
    assert f"SALESFORCE_INSTANCE_URL={instance}" in message
    assert "SALESFORCE_INSTANCE_URL, SALESFORCE_SESSION_ID" in message and "secret-token" not in message


def test_a_session_that_expires_and_cannot_be_renewed_stops_the_run_at_once(sandbox_org) -> None:
    sandbox_org.sync(statuses_for(AUDIENCE[:2]))
    client = sandbox_org.client()
    client._reauthenticate = None  # a session-id login: nothing can renew it
    statuses = statuses_for(AUDIENCE[:20])
    desired = sandbox_org.desired(statuses, client=client)
    sandbox_org.org.expire_session()  # the client's session is now invalid
    writes_before = sandbox_org.org.calls("write")
    report = sync_desired_records(client, sandbox_org.ledger, desired, PROFILE.sync)
    assert report.stopped and "cannot be renewed" in report.stopped and "SALESFORCE_SESSION_ID" in report.stopped
    assert client.session_lost and client.session_lost in report.stopped  # the push asset fails the run with it
    # It stopped at the first refused call instead of attempting every batch.
    assert sandbox_org.org.calls("write") - writes_before <= 1
