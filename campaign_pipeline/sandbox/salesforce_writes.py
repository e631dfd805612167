"""Writing sandbox org records: Ids, COPY-based inserts and updates, grouped writes, deletes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from campaign_pipeline.sandbox.salesforce_objects import (
    ObjectSpec,
    make_record_id,
    normalize_id,
    object_spec,
)
from campaign_pipeline.sandbox.salesforce_rules import RecordWriter, RolledBack, roll_back
from campaign_pipeline.sandbox.salesforce_state import (
    RequestError,
    SfError,
    StoreBase,
    WriteResult,
    copy_rows,
    now_text,
    record_keys,
)

ANALYZE_AFTER_ROWS = 1000
DEFAULT_MEMBER_STATUSES = (("Sent", False, True, 1), ("Responded", True, False, 2))


def _person_name(fields: dict[str, Any]) -> str:
    return " ".join(part for part in (fields.get("FirstName"), fields.get("LastName")) if part)


def _is_person(spec: ObjectSpec, fields: dict[str, Any]) -> bool:
    """Whether the record's Name is its person's name: Contacts, Leads and person accounts."""
    return spec.name in ("Contact", "Lead") or (spec.name == "Account" and bool(fields.get("IsPersonAccount")))


def _person_contact(account: dict[str, Any]) -> dict[str, Any]:
    """The person contact's fields as the org keeps them in step with its person account."""
    return {
        "FirstName": account.get("FirstName"),
        "LastName": account.get("LastName"),
        "Email": account.get("PersonEmail"),
        "HasOptedOutOfEmail": bool(account.get("PersonHasOptedOutOfEmail")),
        "AccountId": account["Id"],
        "IsPersonAccount": True,
    }


def _id_number(record_id: str) -> int:
    """The counter inside an Id made by make_record_id (base 62, characters 6..14)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    number = 0
    for char in record_id[6:15]:
        number = number * 62 + alphabet.index(char)
    return number


class WritingStore(StoreBase):
    """Record writes as Salesforce validates them (the rules live in salesforce_rules)."""

    def _allocate_ids(self, cursor: Any, spec: ObjectSpec, count: int) -> list[str]:
        if count == 0:
            return []
        cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number') FROM generate_series(1, %s)", (count,))
        return [make_record_id(spec.key_prefix, r[0]) for r in cursor.fetchall()]

    def _insert(self, cursor: Any, spec: ObjectSpec, new_records: list[dict[str, Any]]) -> None:
        """Give records Ids and timestamps and load them with one COPY."""
        ids = self._allocate_ids(cursor, spec, len(new_records))
        stamp = now_text()
        rows = []
        for record_id, fields_ in zip(ids, new_records, strict=True):
            fields_["Id"] = record_id
            fields_.setdefault("CreatedDate", stamp)
            # The API refuses these fields on create, so only seeding (insert_raw) sets them: records of the past.
            fields_.setdefault("LastModifiedDate", stamp)
            fields_.setdefault("SystemModstamp", fields_["LastModifiedDate"])
            if spec.field("IsPersonAccount") is not None:
                fields_.setdefault("IsPersonAccount", False)
            if _is_person(spec, fields_):
                fields_["Name"] = _person_name(fields_)
            # seq is the Id's own counter, so creation order holds across processes and restarts.
            rows.append((record_id, spec.name, str(_id_number(record_id)), fields_, *record_keys(spec, fields_)))
        if rows:
            copy_rows(
                cursor,
                self.records_table,
                ("id", "sobject", "seq", "fields", "ext_key", "member_key"),
                rows,
            )
        if len(rows) >= ANALYZE_AFTER_ROWS:
            # Fresh statistics right away: with stale ones the planner scans every record of the
            # type instead of using the email / campaign indexes, and matching queries crawl.
            cursor.execute(f"ANALYZE {self.records_table}")

    def _update(
        self, cursor: Any, spec: ObjectSpec, changed: list[dict[str, Any]], *, keep_stamps: bool = False
    ) -> None:
        """Store changed records; ``keep_stamps``: they carry their LastModifiedDate/SystemModstamp already."""
        if not changed:
            return
        stamp = now_text()
        for fields_ in changed:
            if not keep_stamps:
                fields_["LastModifiedDate"] = stamp
                fields_["SystemModstamp"] = stamp
            if _is_person(spec, fields_):
                fields_["Name"] = _person_name(fields_)
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sf_sandbox_update (id text, fields jsonb, ext_key text, member_key text) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE sf_sandbox_update")
        copy_rows(
            cursor,
            "sf_sandbox_update",
            ("id", "fields", "ext_key", "member_key"),
            ((f["Id"], f, *record_keys(spec, f)) for f in changed),
        )
        cursor.execute(
            f"UPDATE {self.records_table} r SET fields = u.fields, ext_key = u.ext_key, member_key = u.member_key "
            "FROM sf_sandbox_update u WHERE r.id = u.id"
        )

    def insert_raw(self, sobject: str, new_records: list[dict[str, Any]]) -> list[str]:
        """Insert records without API validation (seeding: converted Leads, fixed CreatedDate...)."""
        with self.cursor() as cursor:
            self._lock(cursor, sobject)
            return self.insert_in(cursor, sobject, new_records)

    def _keep_person_contacts(self, cursor: Any, accounts: list[dict[str, Any]]) -> None:
        """Create the person contact of each new person account, and keep existing ones in step with theirs."""
        people = [a for a in accounts if a.get("IsPersonAccount")]
        if not people:
            return
        contact_spec = self.objects["Contact"]
        new = [a for a in people if not a.get("PersonContactId")]
        kept = [a for a in people if a.get("PersonContactId")]
        contacts = [
            {**_person_contact(a), "CreatedDate": a["CreatedDate"], "LastModifiedDate": a["LastModifiedDate"]}
            for a in new
        ]
        self._insert(cursor, contact_spec, contacts)
        for account, contact in zip(new, contacts, strict=True):
            account["PersonContactId"] = contact["Id"]
        if new:
            # The org sets PersonContactId as part of the create: no second change (or SystemModstamp) of the account.
            cursor.execute(
                f"""UPDATE {self.records_table} r SET fields = r.fields || jsonb_build_object('PersonContactId', p.c)
                    FROM unnest(%s::text[], %s::text[]) AS p(a, c) WHERE r.id = p.a""",
                ([a["Id"] for a in new], [a["PersonContactId"] for a in new]),
            )
        if not kept:
            return
        cursor.execute(
            f"SELECT id, fields FROM {self.records_table} WHERE id = ANY(%s)", ([a["PersonContactId"] for a in kept],)
        )
        current = dict(cursor.fetchall())
        # Any change of a person account is one of its person contact too, with the same stamps (one record to users).
        changed = [
            {
                **current[a["PersonContactId"]],
                **_person_contact(a),
                "LastModifiedDate": a["LastModifiedDate"],
                "SystemModstamp": a["SystemModstamp"],
            }
            for a in kept
            if a["PersonContactId"] in current
        ]
        self._update(cursor, contact_spec, changed, keep_stamps=True)

    def _create_default_statuses(self, cursor: Any, campaign_ids: list[str]) -> None:
        statuses = [
            {"CampaignId": cid, "Label": label, "HasResponded": responded, "IsDefault": default, "SortOrder": order}
            for cid in campaign_ids
            for label, responded, default, order in DEFAULT_MEMBER_STATUSES
        ]
        self._insert(cursor, self.objects["CampaignMemberStatus"], statuses)

    def write(
        self,
        sobject: str,
        operation: str,
        rows: Sequence[dict[str, Any]],
        *,
        external_id_field: str | None = None,
        all_or_none: bool = False,
        from_csv: bool = False,
        lock_fault: Callable[[], bool] | None = None,
    ) -> list[WriteResult]:
        """Insert, update or upsert records as Salesforce does; one result per row, in order.

        Validation and writes are set-based (one query per check, one COPY per write) so Bulk
        jobs of 100k rows take seconds. Writers of one sObject type are serialized by an
        advisory lock, which keeps duplicate checks true across processes.
        """
        [results] = self.write_groups(
            [(sobject, rows)],
            operation,
            external_id_field=external_id_field,
            all_or_none=all_or_none,
            from_csv=from_csv,
            lock_fault=lock_fault,
        )
        return results

    def write_groups(
        self,
        groups: Sequence[tuple[str, Sequence[dict[str, Any]]]],
        operation: str,
        *,
        external_id_field: str | None = None,
        all_or_none: bool = False,
        from_csv: bool = False,
        lock_fault: Callable[[], bool] | None = None,
    ) -> list[list[WriteResult]]:
        """Write several sObject types in one transaction (a Collections call may mix types).

        With all_or_none, a failure in any group rolls back every group.
        """
        specs = []
        for sobject, _ in groups:
            spec = object_spec(sobject, self.objects)
            if spec is None:
                raise RequestError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{sobject}'")
            specs.append(spec)
        outcome: list[list[WriteResult]] = []
        try:
            with self.cursor() as cursor:
                # Locks in name order, so two mixed-type writers cannot deadlock.
                for name in sorted({spec.name for spec in specs}):
                    self._lock(cursor, name)
                for spec, (_, rows) in zip(specs, groups, strict=True):
                    writer = RecordWriter(self, cursor, spec, operation, external_id_field, from_csv, lock_fault)
                    outcome.append(writer.run(rows, all_or_none))
                if all_or_none and any(r.errors for group in outcome for r in group):
                    raise RolledBack
        except RolledBack:
            for group in outcome:
                roll_back(group)
            for _, rows in groups[len(outcome) :]:
                outcome.append([WriteResult() for _ in rows])
                roll_back(outcome[-1])
        return outcome

    def _status_delete_refusal(self, cursor: Any, status: dict[str, Any], doomed: list[str]) -> str | None:
        """Why Salesforce keeps a CampaignMemberStatus: members carry it, or it is the last responded one."""
        cursor.execute(
            f"""SELECT count(*) FROM {self.records_table} WHERE sobject = 'CampaignMember'
                AND fields->>'CampaignId' = %s AND lower(fields->>'Status') = lower(%s)""",
            (status["CampaignId"], status["Label"]),
        )
        if cursor.fetchone()[0]:
            return "You can't delete a campaign member status that campaign members have."
        if status.get("HasResponded"):
            cursor.execute(
                f"""SELECT count(*) FROM {self.records_table} WHERE sobject = 'CampaignMemberStatus'
                    AND fields->>'CampaignId' = %s AND (fields->>'HasResponded')::boolean AND NOT id = ANY(%s)""",
                (status["CampaignId"], [status["Id"], *doomed]),
            )
            if not cursor.fetchone()[0]:
                return "A campaign needs at least one member status marked Responded."
        return None

    def delete(self, record_ids: Sequence[str], all_or_none: bool = False) -> list[WriteResult]:
        results = [WriteResult(id=rid) for rid in record_ids]
        with self.cursor() as cursor:
            normalized = [normalize_id(rid) for rid in record_ids]
            cursor.execute(
                f"SELECT id, sobject, fields FROM {self.records_table} WHERE id = ANY(%s)",
                ([n for n in normalized if n],),
            )
            found = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
            doomed: list[str] = []
            for result, rid in zip(results, normalized, strict=True):
                if rid is None:
                    result.errors.append(SfError("MALFORMED_ID", f"malformed id {result.id}"))
                elif rid not in found:
                    result.errors.append(SfError("ENTITY_IS_DELETED", "entity is deleted"))
                elif found[rid][0] == "CampaignMemberStatus" and found[rid][1].get("IsDefault"):
                    result.errors.append(
                        SfError("DELETE_FAILED", "You can't delete the default campaign member status.")
                    )
                elif found[rid][0] == "CampaignMemberStatus" and (
                    refusal := self._status_delete_refusal(cursor, found[rid][1], doomed)
                ):
                    result.errors.append(SfError("DELETE_FAILED", refusal))
                else:
                    result.id = rid
                    doomed.append(rid)
            if all_or_none and any(r.errors for r in results):
                roll_back(results)
                return results
            if doomed:
                # A person account's person contact goes with it (and so do the contact's members).
                cursor.execute(
                    f"""SELECT fields->>'PersonContactId' FROM {self.records_table}
                        WHERE id = ANY(%s) AND sobject = 'Account' AND fields->>'PersonContactId' IS NOT NULL""",
                    (doomed,),
                )
                doomed = doomed + [row[0] for row in cursor.fetchall()]
                # Deleting a Campaign or person takes its members and statuses with it, as Salesforce does; the
                # records go to the recycle bin (deleted_records), where queryAll still finds them.
                stamp = now_text()
                cursor.execute(
                    f"""WITH gone AS (
                            DELETE FROM {self.records_table} WHERE id = ANY(%s)
                            OR (sobject IN ('CampaignMember', 'CampaignMemberStatus') AND fields->>'CampaignId' = ANY(%s))
                            OR (sobject = 'CampaignMember' AND (fields->>'ContactId' = ANY(%s) OR fields->>'LeadId' = ANY(%s)))
                            RETURNING id, sobject, seq, fields)
                        INSERT INTO {self.deleted_table} (id, sobject, seq, fields)
                        SELECT id, sobject, seq, fields || jsonb_build_object(
                            'IsDeleted', true, 'SystemModstamp', %s::text, 'LastModifiedDate', %s::text)
                        FROM gone
                        ON CONFLICT (id) DO NOTHING""",
                    (doomed, doomed, doomed, doomed, stamp, stamp),
                )
            for result in results:
                result.success = not result.errors
        return results

    # --- Bulk API 2.0 ingest -------------------------------------------------------------------------

    def convert_lead(self, lead_id: str) -> str:
        """Convert a Lead as Salesforce's convertLead does: a new Contact, the Lead marked converted; the Contact's Id.

        Conversion is the system's change, not a field update through the API: it moves the Lead's SystemModstamp.
        """
        spec, contact_spec = self.objects["Lead"], self.objects["Contact"]
        with self.cursor() as cursor:
            self._lock(cursor, "Lead")
            cursor.execute(
                f"SELECT fields FROM {self.records_table} WHERE id = %s AND sobject = 'Lead'", (normalize_id(lead_id),)
            )
            row = cursor.fetchone()
            if row is None:
                raise RequestError(400, "INVALID_CROSS_REFERENCE_KEY", f"no Lead with Id {lead_id}")
            lead = dict(row[0])
            if lead.get("IsConverted"):
                raise RequestError(400, "INVALID_STATUS", f"Lead {lead_id} is already converted")
            contact = {name: lead.get(name) for name in ("FirstName", "LastName", "Email", "HasOptedOutOfEmail")}
            self._insert(cursor, contact_spec, [contact])
            lead.update(
                IsConverted=True,
                ConvertedContactId=contact["Id"],
                ConvertedDate=now_text()[:10],
                Status="Closed - Converted",
            )
            self._update(cursor, spec, [lead])
        return str(contact["Id"])

    def insert_in(self, cursor: Any, sobject: str, new_records: list[dict[str, Any]]) -> list[str]:
        """insert_raw inside a caller's transaction."""
        spec = self.objects[sobject]
        self._insert(cursor, spec, new_records)
        if sobject == "Campaign":
            self._create_default_statuses(cursor, [r["Id"] for r in new_records])
        if sobject == "Account":
            self._keep_person_contacts(cursor, new_records)
        return [r["Id"] for r in new_records]
