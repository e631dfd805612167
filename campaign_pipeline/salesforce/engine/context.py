"""What one sync run shares between its parts: the client, the ledger, settings, the org's fields, bookkeeping."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.engine.report import Bookkeeping, KindOutcome
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.resource import SalesforceCallFailed, SalesforceClient

if TYPE_CHECKING:  # the profile imports the mode table, which imports record kinds from here
    from campaign_pipeline.profile import SyncSettings

logger = logging.getLogger("campaign_pipeline.salesforce.engine")

# Salesforce's limit is 150 MB of CSV per Bulk API 2.0 ingest job; a third below leaves room for its encoding.
BULK_MAX_UPLOAD_BYTES = 100_000_000
TEXT_FIELD_TYPES = frozenset({"string", "textarea", "url", "email", "phone", "picklist", "combobox"})


class SalesforceFieldError(ValueError):
    """A mapped or written field does not exist (or cannot be written) in the org; names object and field."""


class OrgFields:
    """The org's describe of each kind's sObject: field types, create-only fields, text lengths."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client
        self.types: dict[str, dict[str, str]] = {}
        self.create_only: dict[str, set[str]] = {}

    def check(self, kind: RecordKind, frame: pd.DataFrame) -> None:
        """Every field column (and the parent field) must exist and be writable in the org; fail before writing."""
        describe = self.client.describe(kind.sobject)
        fields = {entry["name"].lower(): entry for entry in describe["fields"]}
        self.types[kind.name] = {entry["name"]: entry["type"] for entry in describe["fields"]}
        # Fields the org lets us set only on create (a member's Campaign and person, a status Label).
        self.create_only[kind.name] = {
            entry["name"] for entry in describe["fields"] if entry.get("createable") and not entry.get("updateable")
        }
        wanted = salesforce_field_columns(frame)
        if kind.updates_existing:
            if "Id" not in wanted:
                raise ValueError(f"{kind.name} records update existing {kind.sobject} records: the frame needs Id")
            wanted.remove("Id")  # names the record to update; never written
        for extra in (kind.parent_field, kind.sequence_field):
            if extra and extra not in wanted:
                wanted.append(extra)
        for name in wanted:
            entry = fields.get(name.lower())
            if entry is None:
                raise SalesforceFieldError(
                    f"{kind.sobject}.{name} does not exist in the Salesforce org ({self.client.target}); "
                    "create the field or change field_mapping in the sync profile"
                )
            if not (entry.get("createable") or entry.get("updateable")):
                raise SalesforceFieldError(
                    f"{kind.sobject}.{name} is read-only in the Salesforce org; remove it from the mapping"
                )

    def text_limits(self, kind: RecordKind, frame: pd.DataFrame) -> dict[str, int]:
        describe = self.client.describe(kind.sobject)
        columns = set(salesforce_field_columns(frame))
        return {
            entry["name"]: int(entry["length"])
            for entry in describe["fields"]
            if entry["name"] in columns and entry["type"] in TEXT_FIELD_TYPES and entry.get("length")
        }

    def types_of(self, kind: RecordKind) -> dict[str, str]:
        return self.types.get(kind.name, {})

    def create_only_of(self, kind: RecordKind) -> set[str]:
        return self.create_only.get(kind.name, set())


@dataclass
class SyncContext:
    """One run's collaborators; the senders and lookups take it instead of sharing an engine object."""

    client: SalesforceClient
    ledger: SyncLedger
    settings: SyncSettings
    fields: OrgFields
    book: Bookkeeping
    max_upload_bytes: int = BULK_MAX_UPLOAD_BYTES
    # Dry run: per kind, the keys it would create, so a child of such a parent counts as sent after it.
    planned_creates: dict[str, set[str]] = field(default_factory=dict)
    # Dry run: per kind upserted by an external ID, the Ids of records the org holds that the ledger does not know
    # (key -> Id): the real run's upsert updates them, and their children hang on those Ids.
    found_by_external_id: dict[str, dict[str, str]] = field(default_factory=dict)

    def record_call_failure(
        self, kind: RecordKind, rows: pd.DataFrame, outcome: KindOutcome, action: str, failure: SalesforceCallFailed
    ) -> None:
        """A whole call failed: its records fail with the call's code; unanswered creates stay pending."""
        code = failure.error_code or "CALL_FAILED"
        # A create whose answer never came may exist: leave it pending, so the next run looks it up first.
        unknown = failure.outcome_unknown or code in ("TIMEOUT", "BULK_JOB_FAILED")
        result = "pending" if action == "create" and unknown else "error"
        self.book.record(kind, rows, rows["salesforce_id"], result, code, str(failure))
        outcome.add("failed", rows)
