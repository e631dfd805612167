"""The pipeline's own stores as Dagster resources, injected into assets: sync ledger, landing store, people mirror.

Asset frames are the IO manager's (``storage.io_manager.PostgresPandasIOManager``); these are the tables
assets read and write themselves. Each resource opens the store on the configured Postgres (``database_url``,
default: the project's database, embedded or ``CAMPAIGN_PIPELINE_DATABASE_URL``), so a test or a second
deployment points an asset at its own schema by binding another resource, never by patching a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.mailchimp.landing import LandingStore
from campaign_pipeline.mailchimp.ownership import PartitionOwnerMismatch, PartitionOwners
from campaign_pipeline.salesforce.ledger import SyncLedger, ledger_scope
from campaign_pipeline.salesforce.mirror import PeopleMirror
from campaign_pipeline.storage.database import PIPELINE_SCHEMA, get_engine

SYNC_LEDGER_KEY = "sync_ledger"
LANDING_STORE_KEY = "landing_store"
PEOPLE_MIRROR_KEY = "people_mirror"


class SyncLedgerResource(dg.ConfigurableResource):
    """The sync ledger (record kind + key -> Salesforce Id, content hash, last result) in ``schema_name``."""

    database_url: str | None = None
    schema_name: str = PIPELINE_SCHEMA

    def open(self, scope: str = "", *, source: str = "", target: str = "") -> SyncLedger:
        """The ledger rows of one sync profile (``scope``: its name, empty for the classic single profile) for one
        Mailchimp account (``source``) and one Salesforce org (``target``)."""
        return SyncLedger(
            get_engine(self.database_url), schema=self.schema_name, scope=scope, source=source, target=target
        )

    def open_for_run(self, asset_keys: object, partition_keys: Sequence[str], salesforce: Any) -> SyncLedger:
        """The ledger a run's Salesforce assets use: their profile's scope, the Mailchimp account that owns the
        run's campaign partitions (the preflight recorded it) and the org of ``salesforce`` (a
        ``SalesforceResource``), so rows of another account or org are never read or written."""
        campaign_ids = [campaign_id_from_key(key) for key in partition_keys]
        owners = set(PartitionOwners(get_engine(self.database_url)).owners(campaign_ids).values())
        if len(owners) > 1:
            raise PartitionOwnerMismatch(
                f"the campaigns of this run belong to several Mailchimp accounts ({', '.join(sorted(owners))}); "
                "run them separately"
            )
        source = owners.pop() if owners else ""
        return self.open(ledger_scope(asset_keys), source=source, target=salesforce.state_identity())


class LandingStoreResource(dg.ConfigurableResource):
    """Landed Mailchimp events, recipients, fetch cursors and quarantined records."""

    database_url: str | None = None

    def open(self) -> LandingStore:
        return LandingStore(get_engine(self.database_url))


class PeopleMirrorResource(dg.ConfigurableResource):
    """The local mirror of each org's Contacts and Leads that matching reads (``salesforce.mirror``)."""

    database_url: str | None = None
    schema_name: str = PIPELINE_SCHEMA

    def open(self) -> PeopleMirror:
        return PeopleMirror(get_engine(self.database_url), schema=self.schema_name)


def store_resources() -> dict[str, dg.ConfigurableResource]:
    """The stores under their resource keys, on the project's database."""
    return {
        SYNC_LEDGER_KEY: SyncLedgerResource(),
        LANDING_STORE_KEY: LandingStoreResource(),
        PEOPLE_MIRROR_KEY: PeopleMirrorResource(),
    }
