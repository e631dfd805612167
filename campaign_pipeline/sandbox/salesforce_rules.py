"""Validation of one write request against the sandbox org's rules: fields, types, Ids, references, duplicates."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from campaign_pipeline.sandbox.salesforce_campaign_rules import CampaignRules
from campaign_pipeline.sandbox.salesforce_content_rules import CONTENT_OBJECTS, ContentRules
from campaign_pipeline.sandbox.salesforce_objects import (
    FieldSpec,
    ObjectSpec,
    ValueTypeError,
    coerce_value,
    normalize_id,
    object_of_id,
    value_length,
)
from campaign_pipeline.sandbox.salesforce_person_account_rules import PersonAccountRules
from campaign_pipeline.sandbox.salesforce_state import RequestError, SfError, WriteResult

if TYPE_CHECKING:
    from campaign_pipeline.sandbox.salesforce_writes import WritingStore

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RolledBack(Exception):
    """Raised inside a write transaction to undo it (all-or-none with a failed record)."""


def roll_back(results: list[WriteResult]) -> None:
    for result in results:
        result.success = False
        result.created = False
        if not result.errors:
            result.id = None
            result.errors.append(
                SfError(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header",
                )
            )


class RecordWriter(CampaignRules, ContentRules, PersonAccountRules):
    """One write request's validation and persistence, set-based over all its rows."""

    def __init__(
        self,
        store: WritingStore,
        cursor: Any,
        spec: ObjectSpec,
        operation: str,
        external_id_field: str | None,
        from_csv: bool,
        lock_fault: Callable[[], bool] | None,
    ) -> None:
        self.store = store
        self.cursor = cursor
        self.spec = spec
        self.operation = operation
        self.from_csv = from_csv
        self.lock_fault = lock_fault
        self.external: FieldSpec | None = None
        self.required = [f.name for f in spec.fields if f.required]
        self._field_cache: dict[str, FieldSpec | None] = {}
        if operation == "upsert":
            external = spec.field(external_id_field or "")
            if external is None or not (external.external_id or external.name == "Id"):
                raise RequestError(
                    404 if external is None else 400,
                    "NOT_FOUND" if external is None else "INVALID_FIELD",
                    f"Provided external ID field does not exist or is not accessible: {external_id_field}",
                )
            self.external = external
        elif operation not in ("insert", "update"):
            raise RequestError(400, "INVALID_OPERATION", f"Unsupported write operation {operation!r}")

    def _field(self, name: str) -> FieldSpec | None:
        if name not in self._field_cache:
            self._field_cache[name] = self.spec.field(name)
        return self._field_cache[name]

    def run(self, rows: Sequence[dict[str, Any]], all_or_none: bool) -> list[WriteResult]:
        results = [WriteResult() for _ in rows]
        values = [self._parse_row(row, result) for row, result in zip(rows, results, strict=True)]
        targets = self._resolve_targets(values, results)
        finals: list[dict[str, Any] | None] = [None] * len(rows)
        for index, (result, row_values, existing) in enumerate(zip(results, values, targets, strict=True)):
            if result.errors:
                continue
            finals[index] = self._merge(result, row_values, existing)
        self._inject_lock_errors(results, finals)
        self._check_references(results, values, finals)
        if self.spec.name == "CampaignMember":
            self._campaign_member_rules(results, finals, targets)
            self._member_account_rules(finals)
        elif self.spec.name == "Account" and self.store.person_accounts:
            self._account_kind_rules(results, finals, targets)
        elif self.spec.name == "Contact" and self.store.person_accounts:
            self._person_contact_rules(results, targets)
        elif self.spec.name == "CampaignMemberStatus":
            self._member_status_rules(results, finals, targets)
        elif self.spec.name in CONTENT_OBJECTS:
            self._content_rules(results, finals, targets)
        elif self.spec.name == "Campaign":
            self._campaign_hierarchy_rules(results, finals)
        self._check_external_ids(results, finals, targets)
        if all_or_none and any(r.errors for r in results):
            roll_back(results)
            return results
        new_records = [
            f for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None and t is None
        ]
        changed = [
            f
            for r, f, t in zip(results, finals, targets, strict=True)
            if not r.errors and f is not None and t is not None
        ]
        content = self.spec.name in CONTENT_OBJECTS
        if content:
            self._content_before_write(new_records, changed)
        self.store._insert(self.cursor, self.spec, new_records)
        self.store._update(self.cursor, self.spec, changed)
        if content:
            self._content_after_write(new_records, changed, {t["Id"]: t for t in targets if t is not None})
        for result, final, target in zip(results, finals, targets, strict=True):
            if not result.errors and final is not None:
                result.id = final["Id"]
                result.success = True
                result.created = target is None
        if self.spec.name == "Campaign" and new_records:
            self.store._create_default_statuses(self.cursor, [r["Id"] for r in new_records])
        if self.spec.name == "Account":
            self.store._keep_person_contacts(self.cursor, new_records + changed)
        if self.spec.name == "CampaignMemberStatus":
            self._single_default(
                [f for r, f in zip(results, finals, strict=True) if r.success and f and f.get("IsDefault")]
            )
        return results

    # -- per-row parsing --

    def _parse_row(self, row: dict[str, Any], result: WriteResult) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        if not isinstance(row, dict):
            result.errors.append(SfError("JSON_PARSER_ERROR", "each record must be a JSON object"))
            return parsed
        for key, raw in row.items():
            if key == "attributes" and not self.from_csv:
                continue
            field_spec = self._field(key)
            if field_spec is None:
                result.errors.append(
                    SfError("INVALID_FIELD", f"No such column '{key}' on sobject of type {self.spec.name}", (key,))
                )
                continue
            if self.from_csv:
                if raw == "":
                    continue  # Bulk 2.0: an empty cell leaves the field unchanged
                if raw == "#N/A":
                    raw = None
            if field_spec.name == "Id":
                parsed["Id"] = raw
                continue
            try:
                value = coerce_value(field_spec, raw, from_csv=self.from_csv)
                if field_spec.type == "reference" and isinstance(value, str):
                    # 15- and 18-character forms are the same Id; malformed ones fail in _check_references.
                    value = normalize_id(value) or value
                parsed[field_spec.name] = value
            except ValueTypeError:
                result.errors.append(
                    SfError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{field_spec.name}: value not of required type: {raw}",
                        (field_spec.name,),
                    )
                )
        return parsed

    def _id_error(self, raw: Any) -> SfError | None:
        normalized = normalize_id(raw) if isinstance(raw, str) else None
        # By key prefix: a ContentNote's Id is its ContentDocument's (069), which object_of_id names.
        if normalized is None or normalized[:3] != self.spec.key_prefix:
            return SfError("MALFORMED_ID", f"{self.spec.name} ID: id value of incorrect type: {raw}", ("Id",))
        return None

    def _resolve_targets(self, values: list[dict[str, Any]], results: list[WriteResult]) -> list[dict[str, Any] | None]:
        """The existing record each row updates (None: it creates one), fetched in one query."""
        targets: list[dict[str, Any] | None] = [None] * len(values)
        wanted_ids: dict[int, str] = {}
        wanted_keys: dict[int, str] = {}
        seen_ids: set[str] = set()
        for index, (row_values, result) in enumerate(zip(values, results, strict=True)):
            if result.errors:
                continue
            by_id = self.operation == "update" or (self.external is not None and self.external.name == "Id")
            if self.operation == "insert":
                if "Id" in row_values:
                    result.errors.append(
                        SfError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ("Id",))
                    )
            elif by_id:
                raw = row_values.pop("Id", None)
                if raw in (None, ""):
                    if self.operation == "update":
                        result.errors.append(SfError("MISSING_ARGUMENT", "Id not specified in an update call", ("Id",)))
                    continue
                error = self._id_error(raw)
                record_id = normalize_id(raw) or ""
                if error:
                    result.errors.append(error)
                elif record_id in seen_ids:
                    result.errors.append(SfError("DUPLICATE_ID", f"duplicate id in list: {record_id}", ("Id",)))
                else:
                    wanted_ids[index] = record_id
                    seen_ids.add(record_id)
            else:
                assert self.external is not None
                row_values.pop("Id", None)
                key = row_values.get(self.external.name)
                if not isinstance(key, str) or not key:
                    result.errors.append(
                        SfError("MISSING_ARGUMENT", f"{self.external.name} not specified", (self.external.name,))
                    )
                else:
                    wanted_keys[index] = key.lower()
        duplicates = {k for k, n in _count(wanted_keys.values()).items() if n > 1}
        for index, key in list(wanted_keys.items()):
            if key in duplicates:
                results[index].errors.append(
                    SfError(
                        "DUPLICATE_VALUE",
                        f"Duplicate external id specified: {values[index].get(self.external.name) if self.external else key}",
                    )
                )
                del wanted_keys[index]
        found_by_id: dict[str, dict[str, Any]] = {}
        found_by_key: dict[str, dict[str, Any]] = {}
        table = self.store.records_table
        if wanted_ids:
            self.cursor.execute(
                f"SELECT id, fields FROM {table} WHERE id = ANY(%s) AND sobject = %s",
                (list(set(wanted_ids.values())), self.spec.name),
            )
            found_by_id = {r[0]: r[1] for r in self.cursor.fetchall()}
        if wanted_keys:
            self.cursor.execute(
                f"SELECT ext_key, fields FROM {table} WHERE sobject = %s AND ext_key = ANY(%s)",
                (self.spec.name, list(set(wanted_keys.values()))),
            )
            found_by_key = {r[0]: r[1] for r in self.cursor.fetchall()}
        for index, record_id in wanted_ids.items():
            if record_id in found_by_id:
                targets[index] = found_by_id[record_id]
            elif self.operation == "update" or self.external is not None:
                results[index].errors.append(
                    SfError(
                        "ENTITY_IS_DELETED" if self.operation == "update" else "NOT_FOUND",
                        "entity is deleted" if self.operation == "update" else f"Id not found: {record_id}",
                    )
                )
        for index, key in wanted_keys.items():
            targets[index] = found_by_key.get(key)
        return targets

    def _merge(
        self, result: WriteResult, row_values: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The record as it would be stored, or None with errors on the result."""
        refused: list[str] = []
        if existing is None:
            for name in row_values:
                field_spec = self._field(name)
                assert field_spec is not None
                if not field_spec.createable:
                    refused.append(name)
            final = {f.name: f.default for f in self.spec.fields if f.default is not None}
            final.update(row_values)
        else:
            for name, value in list(row_values.items()):
                field_spec = self._field(name)
                assert field_spec is not None
                if not field_spec.updateable:
                    # An upsert may repeat create-only values (its key, the member's Campaign) unchanged.
                    if self.operation == "upsert" and existing.get(name) == value:
                        del row_values[name]
                    else:
                        refused.append(name)
            final = dict(existing)
            final.update(row_values)
        if refused:
            result.errors.append(
                SfError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(refused)}. Please check the security settings of "
                    "this field and verify that it is read/write for your profile or permission set.",
                    tuple(refused),
                )
            )
            return None
        missing = [name for name in self.required if final.get(name) in (None, "")]
        if self.spec.name == "CampaignMember" and "CampaignId" in missing:
            # What Salesforce answers for a member without a Campaign.
            result.errors.append(SfError("MALFORMED_ID", "Invalid campaign id: null", ("CampaignId",)))
            return None
        if self.spec.name == "CampaignMember" and not (final.get("ContactId") or final.get("LeadId")):
            missing.append("ContactId or LeadId")
        if missing:
            result.errors.append(
                SfError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", tuple(missing)
                )
            )
            return None
        for name, value in row_values.items():
            field_spec = self._field(name)
            assert field_spec is not None
            if field_spec.restricted_values and value is not None and value not in field_spec.restricted_values:
                result.errors.append(
                    SfError(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{field_spec.name}: bad value for restricted picklist field: {value}",
                        (name,),
                    )
                )
                return None
            if value is None or not field_spec.length or not isinstance(value, str):
                continue
            if field_spec.type == "email" and not _EMAIL_SHAPE.match(value):
                result.errors.append(
                    SfError("INVALID_EMAIL_ADDRESS", f"{field_spec.name}: invalid email address: {value}", (name,))
                )
                return None
            if value_length(field_spec, value) > field_spec.length:
                if field_spec.type == "base64" and self.spec.name in CONTENT_OBJECTS:
                    result.errors.append(
                        SfError(
                            "FIELD_INTEGRITY_EXCEPTION",
                            f"{field_spec.name}: a JSON (non-multipart) request carries at most 37.5 MB of base64 data",
                            (name,),
                        )
                    )
                elif field_spec.type == "base64":
                    result.errors.append(
                        SfError(
                            "MAXIMUM_SIZE_OF_ATTACHMENT", "Attachment body exceeds the maximum size of 25 MB", (name,)
                        )
                    )
                else:
                    shown = value if len(value) <= 60 else value[:57] + "..."
                    result.errors.append(
                        SfError(
                            "STRING_TOO_LONG",
                            f"{field_spec.name}: data value too large: {shown} (max length={field_spec.length})",
                            (name,),
                        )
                    )
                return None
        if self.spec.name == "Attachment" and "Body" in row_values:
            final["BodyLength"] = value_length(self.spec.field("Body"), final["Body"])  # type: ignore[arg-type]
        return final

    def _inject_lock_errors(self, results: list[WriteResult], finals: list[dict[str, Any] | None]) -> None:
        if self.lock_fault is None:
            return
        for result, final in zip(results, finals, strict=True):
            if not result.errors and final is not None and self.lock_fault():
                record = final.get("Id") or ""
                result.errors.append(
                    SfError(
                        "UNABLE_TO_LOCK_ROW",
                        f"unable to obtain exclusive access to this record or 1 records: {record}",
                    )
                )

    def _check_references(
        self, results: list[WriteResult], values: list[dict[str, Any]], finals: list[dict[str, Any] | None]
    ) -> None:
        reference_fields = [f for f in self.spec.fields if f.type == "reference"]
        to_check: set[str] = set()
        for result, row_values, final in zip(results, values, finals, strict=True):
            if result.errors or final is None:
                continue
            for field_spec in reference_fields:
                raw = row_values.get(field_spec.name)
                if raw is None:
                    continue
                normalized = normalize_id(raw)
                target_type = object_of_id(normalized) if normalized else None
                if normalized is None:
                    result.errors.append(
                        SfError(
                            "MALFORMED_ID", f"{field_spec.name}: id value of incorrect type: {raw}", (field_spec.name,)
                        )
                    )
                elif field_spec.reference_to and target_type not in field_spec.reference_to:
                    result.errors.append(
                        SfError(
                            "FIELD_INTEGRITY_EXCEPTION",
                            f"{field_spec.name}: id value of incorrect type: {raw}",
                            (field_spec.name,),
                        )
                    )
                else:
                    final[field_spec.name] = normalized
                    to_check.add(normalized)
        if not to_check:
            return
        self.cursor.execute(f"SELECT id FROM {self.store.records_table} WHERE id = ANY(%s)", (list(to_check),))
        present = {r[0] for r in self.cursor.fetchall()}
        for result, row_values, final in zip(results, values, finals, strict=True):
            if result.errors or final is None:
                continue
            absent = [
                f.name
                for f in reference_fields
                if row_values.get(f.name) is not None and final.get(f.name) not in present
            ]
            if absent:
                result.errors.append(
                    SfError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", tuple(absent))
                )

    def _check_external_ids(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        external = self.spec.external_id_field
        if external is None:
            return
        claims: dict[str, list[tuple[WriteResult, dict[str, Any] | None]]] = defaultdict(list)
        for result, final, target in zip(results, finals, targets, strict=True):
            if result.errors or final is None:
                continue
            value = final.get(external.name)
            if not isinstance(value, str) or not value:
                continue
            if target is not None and str(target.get(external.name) or "").lower() == value.lower():
                continue
            claims[value.lower()].append((result, target))
        if not claims:
            return
        self.cursor.execute(
            f"SELECT ext_key, id FROM {self.store.records_table} WHERE sobject = %s AND ext_key = ANY(%s)",
            (self.spec.name, list(claims)),
        )
        holders = dict(self.cursor.fetchall())
        for key, claimants in claims.items():
            for position, (result, target) in enumerate(claimants):
                holder = holders.get(key)
                if (holder and (target is None or target.get("Id") != holder)) or position > 0:
                    result.errors.append(
                        SfError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {external.name} duplicates value on record with id: {holder or ''}",
                            (external.name,),
                        )
                    )


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return counts
