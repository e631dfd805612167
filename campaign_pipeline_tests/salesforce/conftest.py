"""Fixtures: a fresh sandbox org per test (own Postgres schema), a ledger, and a client through the real simple-salesforce."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from campaign_pipeline.modes import desired_records
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import SyncReport, sync_desired_records
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session
from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox, seed_people

from .frames import campaign_report, campaign_totals, member_statuses

AUDIENCE = [f"person{n:02d}@example.com" for n in range(24)] + ["o'brien@example.com", "Mixed.Case@Example.com"]

PROFILE = SyncProfile.model_validate(
    {
        "field_mapping": {
            "campaign": {"emails_sent": "NumberSent", "unique_opens": "Unique_Opens__c", "open_rate": "Open_Rate__c"},
            "campaign_member": {"total_opens": "Total_Opens__c", "last_clicked_url": "Last_Clicked_URL__c"},
        }
    }
)


@dataclass
class Org:
    org: SalesforceSandbox
    ledger: SyncLedger

    def client(self, **settings) -> SalesforceClient:
        defaults = dict(backoff_seconds=0.0, max_retries=4)
        return SalesforceClient(
            self.org.client(),
            target="Salesforce target: SANDBOX org (test)",
            is_sandbox=True,
            reauthenticate=lambda: sandbox_session(self.org),
            **{**defaults, **settings},
        )

    def desired(self, statuses: pd.DataFrame, profile: SyncProfile = PROFILE, *, report_frame=None, client=None):
        """The desired records of a campaign-mode sync for the push's ``client``.

        Matching has a client of its own, as its asset has in a run: the push's budget and faults are the push's.
        """
        del client  # the push's client, kept in the signature for the tests that build desired records for it
        campaign_ids = statuses["campaign_id"].unique().tolist()
        if report_frame is None:
            report_frame = pd.concat([campaign_report(c) for c in campaign_ids])
        matches, _ = match_campaign_members(self.client(), statuses)
        return desired_records(
            profile,
            {
                "campaign_totals": campaign_totals(statuses),
                "mailchimp_campaign_report": report_frame,
                "member_statuses": statuses,
                "salesforce_matches": matches,
            },
        )

    def sync(
        self, statuses: pd.DataFrame, profile: SyncProfile = PROFILE, *, report_frame=None, client=None
    ) -> SyncReport:
        client = client or self.client()
        desired = self.desired(statuses, profile, report_frame=report_frame, client=client)
        return sync_desired_records(client, self.ledger, desired, profile.sync)


@pytest.fixture
def sandbox_org(pg_engine) -> Iterator[Org]:
    suffix = uuid.uuid4().hex[:8]
    with SalesforceSandbox(pg_engine, schema=f"sf_test_{suffix}", faults=SalesforceFaults(seed=3)) as org:
        seed_people(org, AUDIENCE, seed=7, coverage=1.0)
        yield Org(org, SyncLedger(pg_engine, schema=f"ledger_test_{suffix}"))


def statuses_for(emails: list[str], campaign_id: str = "cmp1", status: str = "Opened", **kwargs) -> pd.DataFrame:
    return member_statuses(campaign_id, dict.fromkeys(emails, status), **kwargs)
