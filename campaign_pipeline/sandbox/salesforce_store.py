"""The sandbox org's state in Postgres, one class assembled from its parts.

Parts, each its own module: salesforce_state (errors, schema, sessions, API usage, reads), salesforce_paging
(SOQL pages and queryMore), salesforce_writes (inserts, updates, deletes) with the record rules in
salesforce_rules and salesforce_campaign_rules, salesforce_bulk (Bulk API 2.0 ingest jobs) and
salesforce_bulk_query (Bulk API 2.0 query jobs).
"""

from __future__ import annotations

from campaign_pipeline.sandbox.salesforce_bulk import BulkJobStore
from campaign_pipeline.sandbox.salesforce_bulk_query import BulkQueryStore
from campaign_pipeline.sandbox.salesforce_objects import REFERENCE_TYPES, TEXT_TYPES
from campaign_pipeline.sandbox.salesforce_paging import QUERY_PAGE_SIZE
from campaign_pipeline.sandbox.salesforce_soql import SoqlError
from campaign_pipeline.sandbox.salesforce_state import RequestError, SfError, WriteResult


class SalesforceStore(BulkJobStore, BulkQueryStore):
    """All org state, in one Postgres schema; every method is one transaction."""


__all__ = [
    "QUERY_PAGE_SIZE",
    "REFERENCE_TYPES",
    "TEXT_TYPES",
    "RequestError",
    "SalesforceStore",
    "SfError",
    "SoqlError",
    "WriteResult",
]
