"""Fixtures for the activity-mode tests over HTTPS: one sandbox org per session (emptied per test), a fresh ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipeline.modes import desired_records, mode_spec
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import SyncReport, sync_desired_records
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session
from campaign_pipeline.sandbox.salesforce_api import SalesforceFaults, SalesforceSandbox

from .frames import statuses

PEOPLE = {
    "ann@example.com": "Contact",
    "bob@example.com": "Lead",
    "Cat.Mixed@Example.com": "Contact",
    "dan@example.com": "Contact",
}


class RecordingClient(SalesforceClient):
    """The real client, keeping the SOQL it sent: a live org refuses filters on long text (Task.Description)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.soql: list[str] = []

    def query_all(self, soql: str, *, include_deleted: bool = False) -> list[dict]:
        self.soql.append(soql)
        return super().query_all(soql, include_deleted=include_deleted)


@dataclass
class ActivityOrg:
    """The sandbox org with a few people, a ledger of its own, and one call that syncs a mode like the push does."""

    org: SalesforceSandbox
    ledger: SyncLedger
    # The session's org is wiped between tests (a new org in all but its Id), so each test mirrors it afresh.
    mirror: PeopleMirror
    person_ids: dict[str, str] = field(default_factory=dict)
    last_client: RecordingClient | None = None

    def client(self, **settings) -> RecordingClient:
        return RecordingClient(
            self.org.client(),
            target="Salesforce target: SANDBOX org (activity tests)",
            is_sandbox=True,
            reauthenticate=lambda: sandbox_session(self.org),
            **{"backoff_seconds": 0.0, "max_retries": 2, **settings},
        )

    def sync(
        self,
        profile: SyncProfile,
        recipient_frame: pd.DataFrame,
        event_frame: pd.DataFrame,
        report_frame: pd.DataFrame,
        content_frame: pd.DataFrame | None = None,
        *,
        ledger: SyncLedger | None = None,
        client: SalesforceClient | None = None,
    ) -> SyncReport:
        """What the sf_* assets and salesforce_sync do for the mode: desired records, then one engine run."""
        ledger = ledger or self.ledger
        client = self.last_client = client or self.client()
        members = statuses(recipient_frame, event_frame)
        matches, _ = match_campaign_members(client, members, self.mirror)
        frames = {
            "raw_email_events": event_frame,
            "member_statuses": members,
            "salesforce_matches": matches,
            "mailchimp_campaign_report": report_frame,
        }
        if "sf_campaign" in mode_spec(profile).desired_assets:
            frames["campaign_totals"] = _totals(members)
        if mode_spec(profile).needs_content:
            if content_frame is None:
                # A test without the sent email syncs Notes only, as a profile with attachments turned off does.
                profile = profile.model_copy(
                    update={"activity": profile.activity.model_copy(update={"attach_sent_email": False})}
                )
                content_frame = pd.DataFrame({"campaign_id": pd.Series(dtype=object), "html": pd.Series(dtype=object)})
            frames["campaign_content"] = content_frame
        desired = desired_records(profile, frames)
        return sync_desired_records(client, ledger, desired, profile.sync)

    def records(self, sobject: str) -> list[dict]:
        return self.org.records(sobject)


def _totals(members: pd.DataFrame) -> pd.DataFrame:
    from campaign_pipeline.core.metrics import campaign_totals

    from .frames import report

    reports = pd.concat([report(c) for c in members["campaign_id"].unique()], ignore_index=True)
    for column in ("abuse_reports", "unsubscribed", "hard_bounces", "soft_bounces", "forwards_count", "forwards_opens"):
        reports[column] = 0
    for column in ("opens_total", "unique_opens", "clicks_total", "unique_clicks", "unique_subscriber_clicks"):
        reports[column] = 0
    reports["open_rate"] = 0.0
    reports["click_rate"] = 0.0
    return campaign_totals(members, reports)


@pytest.fixture(scope="session")
def _activity_org(pg_engine: sa.Engine) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(pg_engine, schema="activity_sandbox_org", faults=SalesforceFaults(seed=5)) as org:
        yield org


@pytest.fixture
def activity_org(_activity_org: SalesforceSandbox, pg_engine: sa.Engine) -> ActivityOrg:
    """An emptied org holding the PEOPLE (Contacts and Leads) and a ledger in a schema of its own."""
    _activity_org.reset()
    _activity_org.faults = SalesforceFaults(seed=5)
    _activity_org.call_log.clear()
    sf = _activity_org.client()
    person_ids = {}
    for address, sobject in PEOPLE.items():
        values = {"LastName": address.split("@")[0], "Email": address}
        if sobject == "Lead":
            values["Company"] = "Example Ltd"
        person_ids[address] = getattr(sf, sobject).create(values)["id"]
    suffix = uuid.uuid4().hex[:8]
    ledger = SyncLedger(pg_engine, schema=f"activity_ledger_{suffix}")
    return ActivityOrg(_activity_org, ledger, PeopleMirror(pg_engine, schema=f"activity_mirror_{suffix}"), person_ids)
