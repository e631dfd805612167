"""Fixtures for the sandbox Salesforce org tests: one org per session, emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox

SCHEMA = "sandbox_salesforce_tests"


@pytest.fixture(scope="session")
def _org_session(pg_engine: sa.Engine) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(pg_engine, schema=SCHEMA, daily_api_limit=15_000) as org:
        yield org


@pytest.fixture
def org(_org_session: SalesforceSandbox) -> SalesforceSandbox:
    """The session's org with no data, no faults, an empty call log and the default quota."""
    _org_session.reset()
    _org_session.faults = SalesforceFaults()
    _org_session.daily_api_limit = 15_000
    _org_session.call_log.clear()
    return _org_session


@pytest.fixture
def sf(org: SalesforceSandbox):
    """The real simple-salesforce client on the org, over HTTPS."""
    return org.client()
