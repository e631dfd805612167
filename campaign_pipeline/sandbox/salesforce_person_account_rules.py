"""Person Accounts in the sandbox org: person or business Account, and the member's Account from its Contact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from campaign_pipeline.sandbox.salesforce_state import SfError, WriteResult

if TYPE_CHECKING:
    from campaign_pipeline.sandbox.salesforce_objects import ObjectSpec
    from campaign_pipeline.sandbox.salesforce_writes import WritingStore

# Account fields of the person, which only a person account has (the org copies them to its person contact).
PERSON_ONLY_FIELDS = ("FirstName", "LastName", "PersonEmail", "PersonHasOptedOutOfEmail")


class PersonAccountRules:
    """Rules of an org with Person Accounts enabled (the fields exist only there: ``PERSON_ACCOUNT_OBJECTS``).

    The sandbox has no record types: an Account created with a LastName is a person account (Salesforce decides by
    the person-account record type, whose required field is LastName), one created with a Name a business account.
    """

    store: WritingStore
    cursor: Any
    spec: ObjectSpec

    def _account_kind_rules(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        for result, final, target in zip(results, finals, targets, strict=True):
            if result.errors or final is None:
                continue
            person = bool(target.get("IsPersonAccount")) if target is not None else bool(final.get("LastName"))
            if person:
                if not final.get("LastName"):
                    result.errors.append(
                        SfError("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ("LastName",))
                    )
                    continue
                final["IsPersonAccount"] = True
                continue
            given = [name for name in PERSON_ONLY_FIELDS if final.get(name) not in (None, False, "")]
            if given:
                result.errors.append(
                    SfError(
                        "INVALID_FIELD",
                        f"{', '.join(given)}: only a person account has these fields; this is a business account",
                        tuple(given),
                    )
                )
            elif not final.get("Name"):
                result.errors.append(
                    SfError("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ("Name",))
                )
            else:
                final["IsPersonAccount"] = False

    def _person_contact_rules(self, results: list[WriteResult], targets: list[dict[str, Any] | None]) -> None:
        """A person contact is the org's own copy of its person account: writing it directly is refused.

        As a real org answers an update of a person contact (help article 005305352): the person account is the
        interface for the person's fields (``PersonHasOptedOutOfEmail`` for ``HasOptedOutOfEmail``).
        """
        for result, target in zip(results, targets, strict=True):
            if result.errors or target is None or not target.get("IsPersonAccount"):
                continue
            result.errors.append(SfError("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"))

    def _member_account_rules(self, finals: list[dict[str, Any] | None]) -> None:
        """A member of a Contact carries the Contact's Account (for a person contact, its person account)."""
        members = [f for f in finals if f is not None and f.get("ContactId")]
        if not members or self.spec.field("AccountId") is None:
            return
        self.cursor.execute(
            f"SELECT id, fields->>'AccountId' FROM {self.store.records_table} WHERE sobject = 'Contact' AND id = ANY(%s)",
            (list({f["ContactId"] for f in members}),),
        )
        accounts = dict(self.cursor.fetchall())
        for member in members:
            member["AccountId"] = accounts.get(member["ContactId"])
