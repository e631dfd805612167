"""The sync engine: writes desired-record frames to Salesforce idempotently, incrementally and frugally.

Entry point: ``sync_desired_records(client, ledger, desired, settings)``.

``desired`` is an ordered list of ``DesiredRecords(kind, frame)``; parents come before children (Campaign, then
its CampaignMemberStatus values, then CampaignMembers; modes activity/notes append Tasks, Notes, Attachments).
A frame has the shape described in ``campaign_pipeline.core.salesforce_records`` (meta columns + Salesforce
field columns). A ``RecordKind`` says which sObject a frame is, which field takes the parent's Salesforce Id,
which fields can only be set on create, which fields find an existing record (crash recovery, DUPLICATE_VALUE),
and which external-ID field, if any, makes creates upserts.

For every kind the engine:

1. checks each field column against the org's describe (before any write; a missing field is an error naming
   it) and shortens text to the org's field lengths;
2. fills the parent reference from the ledger, diffs against the ledger (``core.diff``) and sends only new
   keys, changed hashes and keys whose last write failed, so a run with nothing new makes zero write calls;
3. looks up records whose earlier create has an unknown outcome (ledger ``pending``) instead of creating twice:
   IN-list queries on the kind's lookup fields, chunked under the URI limit, then an exact match in Python (also
   on ``match_in_python`` fields, long text a live org cannot filter on);
4. sends through sObject Collections (200 records and at most ``COLLECTION_MAX_BODY_BYTES`` a call; a bigger
   record alone through the sObject resource) below ``settings.bulk_threshold`` records and Bulk API 2.0 ingest
   jobs at or above it (never for kinds with ``bulk_allowed=False``: Attachments), recording intent before and
   outcomes after every batch;
5. records per-record failures with Salesforce's code and message, retries lock errors within the run and
   leaves every other failure for the next run, never stopping the other records.

An exhausted API-call budget, the org's quota nearing its end or REQUEST_LIMIT_EXCEEDED stop the run cleanly:
the report says so and everything written so far is in the ledger.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote_plus

import numpy as np
import pandas as pd
from simple_salesforce.exceptions import SalesforceResourceNotFound
from simple_salesforce.format import format_soql

from campaign_pipeline.core import diff as diffing
from campaign_pipeline.core.salesforce_records import (
    CAMPAIGN,
    CAMPAIGN_MEMBER,
    CAMPAIGN_MEMBER_STATUS,
    desired_campaign_member_statuses,
    desired_campaign_members,
    desired_campaigns,
    enforce_field_limits,
    salesforce_field_columns,
)
from campaign_pipeline.profile import SyncProfile, SyncSettings
from campaign_pipeline.salesforce.ledger import RESULT_COLUMNS, SyncLedger
from campaign_pipeline.salesforce.resource import (
    MAX_QUERY_URI_CHARS,
    TRANSIENT_RECORD_ERRORS,
    SalesforceCallFailed,
    SalesforceClient,
    SalesforceStopped,
)

logger = logging.getLogger(__name__)

COLLECTION_SIZE = 200
# A JSON (non-multipart) request carrying blob data is limited to 50 MB of text or 37.5 MB of base64 data (REST API
# guide, "Insert or Update Blob Data"). sObject Collections calls are cut to stay a third below that; a record
# bigger than this on its own (an Attachment near its 25 MB cap is ~35 MB in base64) goes alone, in a single-record
# call (POST /sobjects/<object>, PATCH /sobjects/<object>/<Id>).
COLLECTION_MAX_BODY_BYTES = 25_000_000
# The JSON a Collections call adds around each record ({"attributes": {"type": ...}}, separators).
_COLLECTION_RECORD_OVERHEAD = 64
TEXT_FIELD_TYPES = frozenset({"string", "textarea", "url", "email", "phone", "picklist", "combobox"})
FAILURE_COLUMNS: tuple[str, ...] = ("object_kind", "sync_key", "campaign_id", "error_code", "error_message")
BULK_POLL_LIMIT = 600


class SalesforceFieldError(ValueError):
    """A mapped or written field does not exist (or cannot be written) in the org; names object and field."""


@dataclass(frozen=True)
class RecordKind:
    """What the engine needs to know about one kind of record to write it safely."""

    name: str
    sobject: str
    parent_field: str | None = None
    parent_kind: str | None = None
    create_only_fields: tuple[str, ...] = ()
    lookup_fields: tuple[str, ...] = ()
    external_id_field: str | None = None
    # Look every create up first: for records the org may have made itself (default CampaignMemberStatus values).
    lookup_before_create: bool = False
    # A text field holding the sync key (Campaign.Description names the Mailchimp campaign): a lookup adopts only
    # records whose field contains the key, so a same-named record of someone else is never taken over.
    lookup_key_marker_field: str | None = None
    # Fields that identify a record too but cannot go in a SOQL WHERE (long text areas such as Task.Description:
    # a live org answers INVALID_FIELD "can not be filtered"): selected by the lookup and compared in Python.
    match_in_python: tuple[str, ...] = ()
    # False for objects Bulk API 2.0 cannot load (its CSV has no way to carry blob fields such as Attachment.Body):
    # they always go through sObject Collections, whatever the volume.
    bulk_allowed: bool = True

    @property
    def identity_fields(self) -> tuple[str, ...]:
        """Every field that identifies a record: the SOQL-filtered lookup fields, then those matched in Python."""
        return (*self.lookup_fields, *self.match_in_python)


CAMPAIGN_KIND = RecordKind(CAMPAIGN, "Campaign", lookup_fields=("Name",), lookup_key_marker_field="Description")
CAMPAIGN_MEMBER_STATUS_KIND = RecordKind(
    CAMPAIGN_MEMBER_STATUS,
    "CampaignMemberStatus",
    parent_field="CampaignId",
    parent_kind=CAMPAIGN,
    create_only_fields=("CampaignId", "Label"),
    lookup_fields=("CampaignId", "Label"),
    lookup_before_create=True,
)
CAMPAIGN_MEMBER_KIND = RecordKind(
    CAMPAIGN_MEMBER,
    "CampaignMember",
    parent_field="CampaignId",
    parent_kind=CAMPAIGN,
    create_only_fields=("CampaignId", "ContactId", "LeadId"),
    lookup_fields=("CampaignId", "ContactId", "LeadId"),
)


def with_external_id(kind: RecordKind, external_id_field: str | None) -> RecordKind:
    """The kind keyed by an external-ID field: creates become upserts and lookups use the key."""
    if not external_id_field:
        return kind
    return replace(
        kind,
        external_id_field=external_id_field,
        lookup_fields=(external_id_field,),
        lookup_key_marker_field=None,
        match_in_python=(),
    )


@dataclass
class DesiredRecords:
    kind: RecordKind
    frame: pd.DataFrame


@dataclass
class KindOutcome:
    kind: str
    sobject: str
    desired: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    rejected: int = 0
    to_create: int = 0
    to_update: int = 0
    api: str = "none"


@dataclass
class SyncReport:
    """What a run did (or, in preview, would do), for logs and asset metadata."""

    target: str
    preview_only: bool
    outcomes: dict[str, KindOutcome] = field(default_factory=dict)
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(FAILURE_COLUMNS)))
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    stopped: str | None = None
    kind_errors: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    def total(self, attribute: str) -> int:
        return sum(getattr(outcome, attribute) for outcome in self.outcomes.values())

    @property
    def write_calls(self) -> int:
        return self.calls.get("write", 0)

    @property
    def read_calls(self) -> int:
        return self.calls.get("read", 0)


# -- values on the wire ----------------------------------------------------------------------------------------
def _wire_value(value: Any, field_type: str) -> Any:
    """A frame value as JSON for Salesforce: NA -> null, numpy scalars -> Python, instants -> ISO UTC."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        moment = value.tz_convert("UTC") if value.tzinfo else value.tz_localize("UTC")
        if field_type == "date":
            return moment.strftime("%Y-%m-%d")
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        value = int(value)
    if isinstance(value, (np.floating,)):
        value = float(value)
    if field_type == "percent" and isinstance(value, (int, float)):
        # Our rates are fractions (0..1); Salesforce percent fields hold percentages.
        return round(value * 100.0, 6)
    if field_type in ("double", "currency", "percent") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _csv_value(value: Any, *, for_update: bool) -> str:
    if value is None:
        # Bulk API 2.0: an empty cell leaves a field unchanged on update; #N/A sets it to null.
        return "#N/A" if for_update else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class _Batch:
    """Records of one kind and one action on their way out: the rows, and their payload dicts."""

    rows: pd.DataFrame
    payloads: list[dict]


class SyncEngine:
    """Writes DesiredRecords for one run; see the module docstring. Use ``sync_desired_records``."""

    def __init__(self, client: SalesforceClient, ledger: SyncLedger, settings: SyncSettings) -> None:
        self.client = client
        self.ledger = ledger
        self.settings = settings
        self.report = SyncReport(target=client.target, preview_only=settings.preview_only)
        self._failures: list[pd.DataFrame] = []
        self._changes: list[pd.DataFrame] = []
        self._field_types: dict[str, dict[str, str]] = {}
        self._create_only: dict[str, set[str]] = {}
        self._last_call_failure = SalesforceCallFailed("no call failed yet")

    # -- orchestration -------------------------------------------------------------------------------------------
    def run(self, desired: Sequence[DesiredRecords]) -> SyncReport:
        try:
            for batch in desired:
                self._check_fields(batch.kind, batch.frame)
            for batch in desired:
                try:
                    self._sync_kind(batch.kind, batch.frame)
                except SalesforceCallFailed as failure:
                    # A call that failed after retries (a lookup, a bulk job) ends this kind, not the run: what
                    # was written is recorded, the rest is sent next run; children wait for a missing parent.
                    self.report.kind_errors[batch.kind.name] = str(failure)
                    logger.warning("Salesforce sync of %s failed: %s", batch.kind.name, failure)
        except SalesforceStopped as stop:
            self.report.stopped = str(stop)
            logger.warning("Salesforce sync stopped: %s", stop)
        finally:
            self.report.calls = dict(self.client.stats.calls)
            self.report.retries = self.client.stats.retries
            if self._failures:
                self.report.failures = pd.concat(self._failures, ignore_index=True)[list(FAILURE_COLUMNS)]
            if self._changes:
                self.report.changes = pd.concat(self._changes, ignore_index=True)
        return self.report

    def _check_fields(self, kind: RecordKind, frame: pd.DataFrame) -> None:
        """Every field column (and the parent field) must exist and be writable in the org; fail before writing."""
        describe = self.client.describe(kind.sobject)
        fields = {entry["name"].lower(): entry for entry in describe["fields"]}
        self._field_types[kind.name] = {entry["name"]: entry["type"] for entry in describe["fields"]}
        # Fields the org lets us set only on create (a member's Campaign and person, a status Label).
        self._create_only[kind.name] = {
            entry["name"] for entry in describe["fields"] if entry.get("createable") and not entry.get("updateable")
        }
        wanted = salesforce_field_columns(frame)
        if kind.parent_field and kind.parent_field not in wanted:
            wanted.append(kind.parent_field)
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

    def _text_limits(self, kind: RecordKind, frame: pd.DataFrame) -> dict[str, int]:
        describe = self.client.describe(kind.sobject)
        columns = set(salesforce_field_columns(frame))
        return {
            entry["name"]: int(entry["length"])
            for entry in describe["fields"]
            if entry["name"] in columns and entry["type"] in TEXT_FIELD_TYPES and entry.get("length")
        }

    def _sync_kind(self, kind: RecordKind, frame: pd.DataFrame) -> None:
        outcome = KindOutcome(kind.name, kind.sobject, desired=len(frame))
        self.report.outcomes[kind.name] = outcome
        if frame.empty:
            return
        frame = enforce_field_limits(
            frame, kind.sobject, policy=self.settings.field_limit_policy, extra_limits=self._text_limits(kind, frame)
        )
        campaign_ids = sorted(frame["campaign_id"].dropna().unique().tolist())
        frame = self._fill_parent_ids(kind, frame, campaign_ids)
        diffed = diffing.diff_against_ledger(frame, self.ledger.load(kind.name, campaign_ids))
        parentless = diffed["action"].isin(["create", "update"]) & self._missing_parent(kind, diffed)
        counts = diffing.summarise_actions(diffed)
        outcome.unchanged = counts["unchanged"]
        outcome.rejected = counts["rejected"]
        # A preview counts children of parents it would create; a real run cannot send them without the parent.
        sendable = ~parentless | self.settings.preview_only
        outcome.to_create = int(((diffed["action"] == "create") & sendable).sum())
        outcome.to_update = int(((diffed["action"] == "update") & sendable).sum())
        self._changes.append(self._change_preview(kind, diffed[diffed["action"] != "unchanged"]))
        if self.settings.preview_only:
            return

        rejected = diffed[diffed["action"] == "rejected"]
        self._record(kind, rejected, None, "error", "FIELD_LIMIT", rejected["reject_reason"])
        outcome.failed += len(rejected)
        waiting = diffed[parentless]
        if len(waiting):
            reason = f"parent {kind.parent_kind} has no Salesforce Id yet (its write failed or was not made)"
            self._record(kind, waiting, None, "error", "PARENT_NOT_SYNCED", reason)
            outcome.failed += len(waiting)
        todo = diffed[diffed["action"].isin(["create", "update"]) & ~parentless].copy()
        if todo.empty:
            return

        # Records whose earlier create has an unknown outcome, or that the org may have made itself.
        lookup = (todo["action"] == "create") & (todo["needs_lookup"] | kind.lookup_before_create)
        if kind.external_id_field:
            # An upsert by external ID is safe to repeat as is: there is nothing to look up first.
            lookup = pd.Series(False, index=todo.index)
        if lookup.any():
            todo = self._adopt_existing(kind, todo, lookup, outcome)

        creates = todo[todo["action"] == "create"]
        updates = todo[todo["action"] == "update"]
        use_bulk = kind.bulk_allowed and len(creates) + len(updates) >= self.settings.bulk_threshold
        outcome.api = "bulk" if use_bulk else "collections"
        send = self._send_bulk if use_bulk else self._send_collections
        if len(creates):
            send(kind, creates, "create", outcome)
        if len(updates):
            send(kind, updates, "update", outcome)

    # -- parents ----------------------------------------------------------------------------------------------------
    def _fill_parent_ids(self, kind: RecordKind, frame: pd.DataFrame, campaign_ids: list[str]) -> pd.DataFrame:
        if not kind.parent_field or not kind.parent_kind:
            return frame
        parents = self.ledger.load(kind.parent_kind, campaign_ids)
        parent_ids = parents.dropna(subset=["salesforce_id"]).set_index("sync_key")["salesforce_id"]
        frame = frame.copy()
        frame[kind.parent_field] = frame["parent_key"].map(parent_ids).astype(object)
        return frame

    def _missing_parent(self, kind: RecordKind, diffed: pd.DataFrame) -> pd.Series:
        if not kind.parent_field:
            return pd.Series(False, index=diffed.index)
        return diffed[kind.parent_field].isna() & diffed["parent_key"].notna()

    # -- lookups ------------------------------------------------------------------------------------------------------
    def _adopt_existing(
        self, kind: RecordKind, todo: pd.DataFrame, lookup: pd.Series, outcome: KindOutcome
    ) -> pd.DataFrame:
        """Find records that already exist for creates; adopt their Id, and skip the write if they already match."""
        candidates = todo[lookup]
        types = self._field_types.get(kind.name, {})
        # Blob fields (Attachment.Body) cannot be read for several records in one query: they are not selected, so
        # an adopted record is updated with them rather than compared.
        fields = [
            name
            for name in salesforce_field_columns(todo)
            if name not in kind.identity_fields and types.get(name) != "base64"
        ]
        if kind.lookup_key_marker_field and kind.lookup_key_marker_field not in fields:
            fields.append(kind.lookup_key_marker_field)
        found = self._lookup(kind, candidates, fields)
        if found.empty:
            return todo
        todo = todo.copy()
        # Several records with one identity: adopt the oldest Id, deterministically, and each Id at most once.
        found = found.assign(_identity=self._identity(kind, found)).sort_values("Id")
        options_by_identity = dict(tuple(found.groupby("_identity", sort=False)))
        adopted_ids: set[str] = set()
        unchanged_keys = []
        for index, identity in self._identity(kind, candidates).items():
            options = options_by_identity.get(identity)
            if options is None:
                continue
            if kind.lookup_key_marker_field:
                marker = (
                    options[kind.lookup_key_marker_field]
                    .astype(object)
                    .where(options[kind.lookup_key_marker_field].notna(), "")
                )
                options = options[marker.astype(str).str.contains(str(todo.at[index, "sync_key"]), regex=False)]
            options = options[~options["Id"].isin(adopted_ids)]
            if options.empty:
                continue
            existing = options.iloc[0].to_dict()
            adopted_ids.add(existing["Id"])
            todo.at[index, "salesforce_id"] = existing["Id"]
            todo.at[index, "action"] = "update"
            same = all(
                _same_value(_wire_value(todo.at[index, name], types.get(name, "")), _none_if_na(existing.get(name)))
                for name in salesforce_field_columns(todo)
                if name not in kind.create_only_fields and name not in kind.identity_fields
            )
            if same:
                unchanged_keys.append(index)
        if unchanged_keys:
            adopted = todo.loc[unchanged_keys]
            self._record(kind, adopted, adopted["salesforce_id"], "ok", None, None)
            outcome.unchanged += len(adopted)
            todo = todo.drop(index=unchanged_keys)
        return todo

    def _identity(self, kind: RecordKind, rows: pd.DataFrame) -> pd.Series:
        """A text identity per row from the kind's identity fields (case-insensitive, null as empty)."""
        parts = []
        for name in kind.identity_fields:
            column = rows[name] if name in rows.columns else pd.Series(pd.NA, index=rows.index)
            parts.append(column.astype(object).where(column.notna(), "").astype(str).str.lower())
        identity = parts[0]
        for part in parts[1:]:
            identity = identity + "\x1f" + part
        return identity

    def _lookup(self, kind: RecordKind, rows: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
        """Existing records that may match rows on the kind's lookup fields: a superset, cut down by ``_identity``.

        One query per chunk of rows, not per parent or person: every lookup field is an IN list of the chunk's
        values (``ParentId IN (...) AND Title IN (...)``), chunked under the URI limit. The cross product such a
        query can return holds every wanted record, and ``_identity`` keeps only exact matches. Rows are grouped
        by which lookup fields they hold (a CampaignMember has a ContactId or a LeadId): a field null in a group is
        left out of its WHERE, since ``IN`` never matches null. Rows without the first lookup field are not looked
        up (that field narrows the query to their parent or person). Fields in ``match_in_python`` are selected,
        never filtered on.
        """
        select = ", ".join(dict.fromkeys(["Id", *kind.identity_fields, *fields]))
        names = list(kind.lookup_fields)
        rows = rows[rows[names[0]].notna()]
        present = rows[names].notna()
        records: list[dict] = []
        for combination in present.drop_duplicates().itertuples(index=False):
            held = [name for name, has in zip(names, combination, strict=True) if has]
            group = rows[(present == list(combination)).all(axis=1)]
            where = " AND ".join(f"{name} IN {{}}" for name in held)
            template = f"SELECT {select} FROM {kind.sobject} WHERE {where}"
            for lists in _in_list_chunks(group[held].astype(str), template):
                records += self.client.query_all(format_soql(template, *lists))
        if not records:
            return pd.DataFrame(columns=["Id", *kind.identity_fields])
        found = pd.DataFrame(records)
        for name in [*kind.identity_fields, *fields]:
            if name not in found.columns:
                found[name] = pd.NA
        return found

    # -- payloads -----------------------------------------------------------------------------------------------------
    def _payloads(self, kind: RecordKind, rows: pd.DataFrame, action: str) -> list[dict]:
        types = self._field_types.get(kind.name, {})
        fields = salesforce_field_columns(rows)
        if action == "update":
            create_only = set(kind.create_only_fields) | self._create_only.get(kind.name, set())
            fields = [name for name in fields if name not in create_only]
        values = {name: rows[name].to_numpy(dtype=object) for name in fields}
        payloads = []
        ids = rows["salesforce_id"].to_numpy(dtype=object)
        for position in range(len(rows)):
            record = {name: _wire_value(values[name][position], types.get(name, "")) for name in fields}
            if action == "create":
                # A create leaves a null field unset rather than sending null for it.
                record = {name: value for name, value in record.items() if value is not None}
            else:
                record["Id"] = ids[position]
            payloads.append(record)
        return payloads

    # -- sObject Collections --------------------------------------------------------------------------------------------
    def _send_collections(self, kind: RecordKind, rows: pd.DataFrame, action: str, outcome: KindOutcome) -> None:
        rows = rows.reset_index(drop=True)
        payloads = self._payloads(kind, rows, action)
        sizes = [len(json.dumps(payload)) + _COLLECTION_RECORD_OVERHEAD for payload in payloads]
        pending_positions = list(range(len(rows)))
        for attempt in range(self.client.max_retries + 1):
            transient: list[int] = []
            for chunk in _collection_batches(pending_positions, sizes, COLLECTION_MAX_BODY_BYTES):
                chunk_rows = rows.iloc[chunk]
                if action == "create":
                    self.ledger.record_pending(kind.name, chunk_rows)
                # An upsert stays a (one-record) Collections call: the sObject upsert answers an update without the Id.
                alone = len(chunk) == 1 and sizes[chunk[0]] > COLLECTION_MAX_BODY_BYTES
                if alone and not (action == "create" and kind.external_id_field):
                    results = self._single_record_call(kind, action, payloads[chunk[0]])
                else:
                    results = self._collection_call(kind, action, [payloads[i] for i in chunk])
                if results is None:  # the whole call failed; recorded inside
                    self._record_call_failure(kind, chunk_rows, outcome, action)
                    continue
                transient += self._apply_results(
                    kind, chunk_rows, chunk, results, action, outcome, final=attempt == self.client.max_retries
                )
            if not transient:
                return
            pending_positions = transient
            self.client.stats.retries += 1
            self.client.sleep(self.client.backoff_seconds * (2**attempt))

    def _collection_call(self, kind: RecordKind, action: str, records: list[dict]) -> list[dict] | None:
        body_records = [{"attributes": {"type": kind.sobject}, **record} for record in records]
        body = json.dumps({"allOrNone": False, "records": body_records})
        what = f"{action} {len(records)} {kind.sobject} record(s) via sObject Collections"
        try:
            if action == "create" and kind.external_id_field:
                return self.client.rest(
                    "write", what, "PATCH", f"composite/sobjects/{kind.sobject}/{kind.external_id_field}", data=body
                )
            if action == "create":
                return self.client.rest("write", what, "POST", "composite/sobjects", data=body, idempotent=False)
            return self.client.rest("write", what, "PATCH", "composite/sobjects", data=body)
        except SalesforceCallFailed as failure:
            self._last_call_failure = failure
            logger.warning("%s", failure)
            return None

    def _single_record_call(self, kind: RecordKind, action: str, record: dict) -> list[dict] | None:
        """One record too big to share a Collections call, through the sObject resource; answered like Collections.

        A refusal of the record itself (4xx with an error code: validation, DUPLICATE_VALUE...) becomes its
        per-record failure; a call that failed otherwise (timeouts, 5xx after retries) returns None, as a failed
        Collections call does.
        """
        what = f"{action} 1 {kind.sobject} record via the sObject resource (too large for sObject Collections)"
        body = {name: value for name, value in record.items() if name != "Id"}
        try:
            if action == "create":
                answer = self.client.rest(
                    "write", what, "POST", f"sobjects/{kind.sobject}", data=json.dumps(body), idempotent=False
                )
                return [answer]
            self.client.rest("write", what, "PATCH", f"sobjects/{kind.sobject}/{record['Id']}", data=json.dumps(body))
            return [{"id": record["Id"], "success": True, "errors": []}]
        except SalesforceResourceNotFound as missing:
            # The record is gone (deleted in Salesforce since our last write): its failure, not the call's.
            error: dict[str, Any] = (missing.content or [{}])[0] if isinstance(missing.content, list) else {}
            code = error.get("errorCode") or "NOT_FOUND"
            message = f"{what}: Salesforce answered 404 {code} {error.get('message', '')}".strip()
            return [{"success": False, "errors": [{"statusCode": code, "message": message}]}]
        except SalesforceCallFailed as failure:
            if failure.status is not None and 400 <= failure.status < 500 and failure.error_code:
                return [{"success": False, "errors": [{"statusCode": failure.error_code, "message": str(failure)}]}]
            self._last_call_failure = failure
            logger.warning("%s", failure)
            return None

    def _record_call_failure(self, kind: RecordKind, rows: pd.DataFrame, outcome: KindOutcome, action: str) -> None:
        failure = self._last_call_failure
        code = failure.error_code or "CALL_FAILED"
        # A create whose answer never came may exist: leave it pending, so the next run looks it up first.
        result = "pending" if action == "create" and code in ("TIMEOUT", "BULK_JOB_FAILED") else "error"
        self._record(kind, rows, rows["salesforce_id"], result, code, str(failure))
        outcome.failed += len(rows)

    def _apply_results(
        self,
        kind: RecordKind,
        rows: pd.DataFrame,
        positions: list[int],
        results: list[dict],
        action: str,
        outcome: KindOutcome,
        *,
        final: bool,
    ) -> list[int]:
        """Record one call's per-record results; return positions to retry (lock errors) unless this is final."""
        ok = np.array([bool(result.get("success")) for result in results])
        new_ids = [result.get("id") for result in results]
        codes = [(result.get("errors") or [{}])[0].get("statusCode", "") for result in results]
        messages = [(result.get("errors") or [{}])[0].get("message", "") for result in results]
        retry_mask = np.array(
            [not good and code in TRANSIENT_RECORD_ERRORS and not final for good, code in zip(ok, codes, strict=True)]
        )
        duplicate_mask = np.array(
            [
                not good and code == "DUPLICATE_VALUE" and action == "create"
                for good, code in zip(ok, codes, strict=True)
            ]
        )
        ids = pd.Series(new_ids, index=rows.index, dtype=object).where(ok, rows["salesforce_id"])
        done = ok
        self._record(kind, rows[done], ids[done], "ok", None, None)
        if action == "create" or kind.external_id_field:
            created_flags = [bool(result.get("created", action == "create")) for result in results]
            outcome.created += int(sum(flag for flag, good in zip(created_flags, ok, strict=True) if good))
            outcome.updated += int(sum(not flag for flag, good in zip(created_flags, ok, strict=True) if good))
        else:
            outcome.updated += int(ok.sum())
        hard_fail = ~ok & ~retry_mask & ~duplicate_mask
        failed_rows = rows[hard_fail]
        self._record(
            kind,
            failed_rows,
            failed_rows["salesforce_id"],
            "error",
            pd.Series(codes, index=rows.index)[hard_fail],
            pd.Series(messages, index=rows.index)[hard_fail],
        )
        outcome.failed += int(hard_fail.sum())
        if duplicate_mask.any():
            # The record exists (an earlier run, or the org itself made it): adopt it, then bring it up to date.
            self._adopt_duplicates(kind, rows[duplicate_mask], outcome)
        return [position for position, retry in zip(positions, retry_mask, strict=True) if retry]

    def _adopt_duplicates(self, kind: RecordKind, rows: pd.DataFrame, outcome: KindOutcome) -> None:
        adopted = self._adopt_existing(kind, rows.assign(action="create"), pd.Series(True, index=rows.index), outcome)
        updates = adopted[adopted["action"] == "update"]
        missing = adopted[adopted["action"] == "create"]
        if len(missing):
            self._record(
                kind,
                missing,
                None,
                "error",
                "DUPLICATE_VALUE",
                "Salesforce reports a duplicate that a lookup cannot find",
            )
            outcome.failed += len(missing)
        if len(updates):
            self._send_collections(kind, updates, "update", outcome)

    # -- Bulk API 2.0 ------------------------------------------------------------------------------------------------------
    def _send_bulk(
        self, kind: RecordKind, rows: pd.DataFrame, action: str, outcome: KindOutcome, depth: int = 0
    ) -> None:
        rows = rows.reset_index(drop=True)
        payloads = self._payloads(kind, rows, action)
        for_update = action == "update"
        columns = list(dict.fromkeys(name for payload in payloads for name in payload))
        if for_update:
            columns = ["Id", *[name for name in columns if name != "Id"]]
        cells = pd.DataFrame(
            {name: [_csv_value(payload.get(name), for_update=for_update) for payload in payloads] for name in columns}
        )
        buffer = io.StringIO()
        cells.to_csv(buffer, index=False, lineterminator="\n")
        if action == "create":
            self.ledger.record_pending(kind.name, rows)
        operation = "update" if for_update else ("upsert" if kind.external_id_field else "insert")
        try:
            successful, failed = self._bulk_job(kind, operation, buffer.getvalue(), len(rows))
        except SalesforceCallFailed as failure:
            self._last_call_failure = failure
            self._record_call_failure(kind, rows, outcome, action)
            return
        # Results echo the uploaded cells, not our keys: pair them back by cell content, in order for repeats.
        identity = _row_identity(cells, columns)
        position_of = pd.Series(
            range(len(rows)), index=identity + "\x1e" + identity.groupby(identity).cumcount().astype(str)
        )
        retry_positions: list[int] = []
        failed_positions: set[int] = set()
        ok_ids: dict[int, str] = {}
        created = 0
        for result_rows, is_ok in ((successful, True), (failed, False)):
            if result_rows.empty:
                continue
            result_identity = _row_identity(result_rows, columns)
            keys = result_identity + "\x1e" + result_identity.groupby(result_identity).cumcount().astype(str)
            positions = keys.map(position_of)
            if is_ok:
                for position, sf_id, was_created in zip(
                    positions,
                    result_rows["sf__Id"],
                    result_rows.get("sf__Created", pd.Series("false", index=result_rows.index)),
                    strict=True,
                ):
                    if pd.notna(position):
                        ok_ids[int(position)] = sf_id
                        created += str(was_created).lower() == "true"
            else:
                errors = result_rows["sf__Error"].fillna("")
                codes = errors.str.split(":", n=1).str[0]
                messages = errors.str.split(":", n=1).str[1].fillna("").str.strip()
                valid = positions.notna()
                positions_ok = positions[valid].astype(int)
                lock = codes[valid].isin(TRANSIENT_RECORD_ERRORS).to_numpy() & (depth < self.client.max_retries)
                retry_positions += positions_ok[lock].tolist()
                hard = positions_ok[~lock].tolist()
                failed_positions.update(hard)
                hard_rows = rows.iloc[hard]
                self._record(
                    kind,
                    hard_rows,
                    hard_rows["salesforce_id"],
                    "error",
                    pd.Series(codes[valid][~lock].to_numpy(), index=hard_rows.index),
                    pd.Series(messages[valid][~lock].to_numpy(), index=hard_rows.index),
                )
                outcome.failed += len(hard)
        if ok_ids:
            done_rows = rows.iloc[sorted(ok_ids)]
            self._record(
                kind, done_rows, pd.Series([ok_ids[p] for p in sorted(ok_ids)], index=done_rows.index), "ok", None, None
            )
            if action == "create":
                outcome.created += created if operation == "upsert" else len(ok_ids)
                outcome.updated += len(ok_ids) - created if operation == "upsert" else 0
            else:
                outcome.updated += len(ok_ids)
        answered = set(ok_ids) | set(retry_positions) | failed_positions
        unanswered = [position for position in range(len(rows)) if position not in answered]
        if unanswered:
            # Neither succeeded nor failed (unprocessed): a create may or may not exist, so look it up next run.
            lost = rows.iloc[unanswered]
            result = "pending" if action == "create" else "error"
            self._record(
                kind, lost, lost["salesforce_id"], result, "NOT_PROCESSED", "Bulk job did not process the record"
            )
            outcome.failed += len(lost)
        if retry_positions:
            self.client.stats.retries += 1
            self.client.sleep(self.client.backoff_seconds * (2**depth))
            retry_rows = rows.iloc[retry_positions]
            sender = self._send_bulk if len(retry_rows) >= self.settings.bulk_threshold else self._send_collections
            if sender is self._send_bulk:
                self._send_bulk(kind, retry_rows, action, outcome, depth + 1)
            else:
                self._send_collections(kind, retry_rows, action, outcome)

    def _bulk_job(
        self, kind: RecordKind, operation: str, csv_text: str, expected: int
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        spec: dict[str, str | None] = {
            "object": kind.sobject,
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
        }
        if operation == "upsert":
            spec["externalIdFieldName"] = kind.external_id_field
        what = f"Bulk API 2.0 {operation} of {expected} {kind.sobject} record(s)"
        job = self.client.rest(
            "write", f"{what}: create job", "POST", "jobs/ingest", data=json.dumps(spec), idempotent=False
        )
        job_path = f"jobs/ingest/{job['id']}"
        self.client.raw(
            "write",
            f"{what}: upload",
            "PUT",
            f"{job_path}/batches",
            data=csv_text.encode("utf-8"),
            headers={"Content-Type": "text/csv"},
        )
        self.client.rest("write", f"{what}: close", "PATCH", job_path, data=json.dumps({"state": "UploadComplete"}))
        state = ""
        for poll in range(BULK_POLL_LIMIT):
            info = self.client.rest("read", f"{what}: status", "GET", job_path)
            state = info.get("state", "")
            if state in ("JobComplete", "Failed", "Aborted"):
                break
            self.client.sleep(min(0.05 * (2**poll), 5.0))
        if state != "JobComplete":
            message = info.get("errorMessage") or state
            raise SalesforceCallFailed(
                f"{what}: job {job['id']} ended {state}: {message}", error_code="BULK_JOB_FAILED"
            )
        successful = self._bulk_results(f"{what}: successful results", f"{job_path}/successfulResults")
        failed = (
            self._bulk_results(f"{what}: failed results", f"{job_path}/failedResults")
            if info.get("numberRecordsFailed", 1)
            else pd.DataFrame()
        )
        return successful, failed

    def _bulk_results(self, what: str, path: str) -> pd.DataFrame:
        response = self.client.raw("read", what, "GET", path, headers={"Accept": "text/csv"})
        text = response.text
        if not text.strip():
            return pd.DataFrame()
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)

    # -- bookkeeping -------------------------------------------------------------------------------------------------------
    def _record(self, kind: RecordKind, rows: pd.DataFrame, ids: Any, result: str, codes: Any, messages: Any) -> None:
        if rows.empty:
            return
        frame = pd.DataFrame(
            {
                "sync_key": rows["sync_key"].to_numpy(),
                "campaign_id": rows["campaign_id"].to_numpy(),
                "salesforce_id": (ids.to_numpy() if isinstance(ids, pd.Series) else ids) if ids is not None else pd.NA,
                "content_hash": rows["content_hash"].to_numpy(),
                "last_result": result,
                "error_code": codes.to_numpy() if isinstance(codes, pd.Series) else codes,
                "error_message": messages.to_numpy() if isinstance(messages, pd.Series) else messages,
            },
            index=rows.index,
        )
        self.ledger.record_results(kind.name, frame[list(RESULT_COLUMNS)])
        if result == "error":
            self._failures.append(frame.assign(object_kind=kind.name))

    def _change_preview(self, kind: RecordKind, changed: pd.DataFrame) -> pd.DataFrame:
        fields = [name for name in salesforce_field_columns(changed) if name != kind.parent_field]
        summary = pd.Series("", index=changed.index, dtype=object)
        for name in fields[:6]:
            shown = changed[name].astype(object).where(changed[name].notna(), "null").astype(str).str.slice(0, 40)
            summary = summary + name + "=" + shown + "; "
        return pd.DataFrame(
            {
                "object_kind": kind.name,
                "sync_key": changed["sync_key"].to_numpy(),
                "action": np.where(changed["is_retry"], changed["action"] + " (retry)", changed["action"]),
                "salesforce_id": changed["salesforce_id"].to_numpy(),
                "fields": summary.str.rstrip("; ").to_numpy(),
            }
        )


def _same_value(desired: Any, existing: Any) -> bool:
    if desired is None or existing is None:
        return desired is None and existing is None
    if isinstance(desired, (int, float)) and isinstance(existing, (int, float)) and not isinstance(desired, bool):
        return math.isclose(float(desired), float(existing), rel_tol=1e-9, abs_tol=1e-9)
    return str(desired) == str(existing)


def _none_if_na(value: Any) -> Any:
    return None if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)) else value


def _row_identity(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    identity = pd.Series("", index=frame.index, dtype=object)
    for name in columns:
        values = frame[name].astype(str) if name in frame.columns else pd.Series("", index=frame.index)
        identity = identity + values + "\x1f"
    return identity


def _literal_cost(value: str) -> int:
    # The escaped, quoted, URL-encoded literal plus its separating comma (encoded).
    return len(quote_plus(format_soql("{}", value))) + len(quote_plus(","))


def _in_list_chunks(
    values: pd.DataFrame, template: str, max_uri_chars: int = MAX_QUERY_URI_CHARS
) -> Iterator[list[list[str]]]:
    """IN lists (one per column of ``values``) for ``template``, each query under the URI limit once encoded.

    Rows are taken in sorted order and added while the query still fits, so rows sharing a parent share its
    literal: a chunk costs its distinct values, not its rows.
    """
    columns = list(values.columns)
    base = len(quote_plus(format_soql(template, *[[] for _ in columns])))
    distinct = values.drop_duplicates().sort_values(columns)
    chosen: list[dict[str, None]] = [{} for _ in columns]
    size = base
    for row in distinct.itertuples(index=False):
        cost = sum(_literal_cost(value) for value, seen in zip(row, chosen, strict=True) if value not in seen)
        if chosen[0] and size + cost > max_uri_chars:
            yield [list(seen) for seen in chosen]
            chosen = [{} for _ in columns]
            size = base
            cost = sum(_literal_cost(value) for value in row)
        for value, seen in zip(row, chosen, strict=True):
            seen[value] = None
        size += cost
    if chosen[0]:
        yield [list(seen) for seen in chosen]


def _collection_batches(positions: list[int], sizes: list[int], max_bytes: int) -> Iterator[list[int]]:
    """Positions in order, cut into Collections calls of at most COLLECTION_SIZE records and ``max_bytes`` of JSON.

    A record bigger than ``max_bytes`` on its own is a batch of one (the caller sends it alone).
    """
    batch: list[int] = []
    total = 0
    for position in positions:
        size = sizes[position]
        if batch and (len(batch) == COLLECTION_SIZE or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(position)
        total += size
    if batch:
        yield batch


def sync_desired_records(
    client: SalesforceClient, ledger: SyncLedger, desired: Sequence[DesiredRecords], settings: SyncSettings
) -> SyncReport:
    """Write the desired records (parents first) and return what happened; see the module docstring."""
    return SyncEngine(client, ledger, settings).run(desired)


def campaign_kind(profile: SyncProfile) -> RecordKind:
    """Campaign records, upserted by the profile's Campaign external-ID field when it has one."""
    return with_external_id(CAMPAIGN_KIND, profile.field_mapping.campaign_key_field)


def campaign_member_kind(profile: SyncProfile) -> RecordKind:
    """CampaignMember records, upserted by the profile's CampaignMember external-ID field when it has one."""
    return with_external_id(CAMPAIGN_MEMBER_KIND, profile.field_mapping.campaign_member_key_field)


def campaign_mode_records(
    profile: SyncProfile,
    *,
    campaign_totals: pd.DataFrame,
    campaign_report: pd.DataFrame,
    member_statuses: pd.DataFrame | None = None,
    matches: pd.DataFrame | None = None,
) -> list[DesiredRecords]:
    """Desired records of modes campaign (Campaign, its member statuses, members) and campaign_totals (Campaign)."""
    campaigns = desired_campaigns(
        campaign_totals,
        campaign_report,
        totals_mapping=profile.field_mapping.campaign,
        key_field=profile.field_mapping.campaign_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )
    desired = [DesiredRecords(campaign_kind(profile), campaigns)]
    if profile.mode == "campaign_totals" or member_statuses is None or matches is None:
        return desired
    members = desired_campaign_members(
        member_statuses,
        matches,
        member_mapping=profile.field_mapping.campaign_member,
        key_field=profile.field_mapping.campaign_member_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )
    return [
        *desired,
        DesiredRecords(CAMPAIGN_MEMBER_STATUS_KIND, desired_campaign_member_statuses(campaigns["campaign_id"])),
        DesiredRecords(campaign_member_kind(profile), members),
    ]
