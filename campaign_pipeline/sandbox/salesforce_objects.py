"""Metadata of the sandbox org: sObjects, their fields, key prefixes and Salesforce-style record Ids."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
from dataclasses import dataclass, field, replace
from typing import Any

API_VERSION = "62.0"

# Field types whose values are text; SOQL compares them case-insensitively, as Salesforce does.
TEXT_TYPES = frozenset({"string", "email", "picklist", "textarea", "url", "phone", "combobox"})
NUMBER_TYPES = frozenset({"double", "int", "percent", "currency"})
REFERENCE_TYPES = frozenset({"id", "reference"})

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_SHAPE = re.compile(r"^[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?$")
ORG_ID = "00D5g000004SbXQEA0"
# The one API user of the sandbox org (createdById of Bulk jobs, the OAuth identity URL).
API_USER_ID = "0055g00000A1b2CAAR"
# Task.TaskSubtype, a restricted picklist fixed at create (Salesforce's object reference lists these values).
TASK_SUBTYPES = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")


@dataclass(frozen=True)
class FieldSpec:
    """One field as `describe` reports it, plus what the emulator needs to enforce it."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    required: bool = False  # must be non-null after defaults are applied
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    external_id: bool = False
    default: Any = None
    reference_to: tuple[str, ...] = ()
    # Set by the org, never by a client (Id, CreatedDate, Name on Contact/Lead...).
    system: bool = False
    # A restricted picklist accepts only these values (describe lists them; writes with others are refused).
    restricted_values: tuple[str, ...] = ()

    @property
    def filterable(self) -> bool:
        """Long text areas (over 255 characters) and blobs cannot be filtered or sorted in SOQL."""
        return not (self.type == "base64" or (self.type == "textarea" and self.length > 255))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "length": self.length,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable and not self.required,
            "externalId": self.external_id,
            "idLookup": self.external_id or self.name == "Id" or self.type == "email",
            "unique": self.external_id,
            "custom": self.name.endswith("__c"),
            "defaultedOnCreate": self.default is not None,
            "referenceTo": list(self.reference_to),
            "filterable": self.filterable,
            "sortable": self.filterable,
            "picklistValues": [
                {"value": v, "label": v, "active": True, "defaultValue": False} for v in self.restricted_values
            ],
            "restrictedPicklist": bool(self.restricted_values),
        }


@dataclass(frozen=True)
class ObjectSpec:
    """One sObject type: its key prefix and fields."""

    name: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    label: str = ""
    by_lower_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_lower_name.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        return self.by_lower_name.get(name.lower())

    @property
    def external_id_field(self) -> FieldSpec | None:
        # The emulator supports one external Id field per object, which is all the
        # pipeline's objects need; it is kept in an indexed column for upserts.
        return next((f for f in self.fields if f.external_id), None)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "keyPrefix": self.key_prefix,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "custom": False,
            "fields": [f.describe() for f in self.fields],
            "urls": {
                "sobject": f"/services/data/v{API_VERSION}/sobjects/{self.name}",
                "describe": f"/services/data/v{API_VERSION}/sobjects/{self.name}/describe",
            },
        }


def _system_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Id", "id", "Record ID", 18, createable=False, updateable=False, nillable=False, system=True),
        FieldSpec(
            "CreatedDate", "datetime", "Created Date", createable=False, updateable=False, nillable=False, system=True
        ),
        FieldSpec(
            "LastModifiedDate",
            "datetime",
            "Last Modified Date",
            createable=False,
            updateable=False,
            nillable=False,
            system=True,
        ),
        # Moves on every change, the system's own included (Lead conversion, deletion): what replication reads.
        FieldSpec(
            "SystemModstamp",
            "datetime",
            "System Modstamp",
            createable=False,
            updateable=False,
            nillable=False,
            system=True,
        ),
        # True only on deleted records, which only queryAll returns.
        FieldSpec("IsDeleted", "boolean", "Deleted", createable=False, updateable=False, nillable=False, system=True),
    )


def _text(name: str, length: int, **kwargs: Any) -> FieldSpec:
    return FieldSpec(name, kwargs.pop("type", "string"), length=length, **kwargs)


def _ref(name: str, *targets: str, **kwargs: Any) -> FieldSpec:
    return FieldSpec(name, "reference", length=18, reference_to=targets, **kwargs)


def _num(name: str, type_: str = "double", **kwargs: Any) -> FieldSpec:
    return FieldSpec(name, type_, **kwargs)


def _bool(name: str, default: bool = False, **kwargs: Any) -> FieldSpec:
    return FieldSpec(name, "boolean", default=default, nillable=False, **kwargs)


PERSON_TYPES = ("Contact", "Lead")
CONTENT_DOCUMENT_PREFIX = "069"
# A file or note version sent as JSON: Salesforce takes at most 37.5 MB of base64 in a non-multipart request,
# which is 28.125 MB decoded (multipart uploads, which the pipeline does not use, go to 2 GB).
CONTENT_MAX_BYTES = 37_500_000 * 3 // 4
# ContentDocumentLink.ShareType: Viewer, Collaborator, Inferred (from the linked record); Visibility values.
SHARE_TYPES = ("V", "C", "I")
VISIBILITIES = ("AllUsers", "InternalUsers", "SharedUsers")
ANY_PARENT = ("Account", "Contact", "Lead", "Campaign", "CampaignMember", "Task")

OBJECTS: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "Account",
            "001",
            _system_fields() + (_text("Name", 255, required=True),),
        ),
        ObjectSpec(
            "Contact",
            "003",
            _system_fields()
            + (
                _text("FirstName", 40),
                _text("LastName", 80, required=True),
                _text("Name", 121, createable=False, updateable=False, system=True),
                _text("Email", 80, type="email"),
                _ref("AccountId", "Account"),
                _text("Title", 128),
                _text("Phone", 40, type="phone"),
                _bool("HasOptedOutOfEmail"),
            ),
        ),
        ObjectSpec(
            "Lead",
            "00Q",
            _system_fields()
            + (
                _text("FirstName", 40),
                _text("LastName", 80, required=True),
                _text("Name", 121, createable=False, updateable=False, system=True),
                _text("Email", 80, type="email"),
                _text("Company", 255, required=True),
                _text("Status", 255, type="picklist", required=True, default="Open - Not Contacted"),
                _text("LeadSource", 255, type="picklist"),
                # Conversion happens through convertLead, never a plain create/update.
                _bool("IsConverted", createable=False, updateable=False),
                _ref("ConvertedContactId", "Contact", createable=False, updateable=False),
                FieldSpec("ConvertedDate", "date", createable=False, updateable=False),
                _bool("HasOptedOutOfEmail"),
            ),
        ),
        ObjectSpec(
            "Campaign",
            "701",
            _system_fields()
            + (
                _text("Name", 80, required=True),
                # The campaign hierarchy (up to five levels; no cycles: salesforce_campaign_rules).
                _ref("ParentId", "Campaign"),
                _text("Status", 255, type="picklist", default="Planned"),
                _text("Type", 255, type="picklist"),
                _bool("IsActive"),
                _text("Description", 32000, type="textarea"),
                FieldSpec("StartDate", "date"),
                FieldSpec("EndDate", "date"),
                _num("NumberSent"),
                _num("Emails_Delivered__c"),
                _num("Unique_Opens__c"),
                _num("Total_Opens__c"),
                _num("Unique_Clicks__c"),
                _num("Total_Clicks__c"),
                _num("Hard_Bounces__c"),
                _num("Soft_Bounces__c"),
                _num("Unsubscribes__c"),
                _num("Open_Rate__c", "percent"),
                _num("Click_Rate__c", "percent"),
                _text("Mailchimp_Campaign_Id__c", 255, external_id=True),
            ),
        ),
        ObjectSpec(
            "CampaignMember",
            "00v",
            _system_fields()
            + (
                _ref("CampaignId", "Campaign", required=True, updateable=False),
                _ref("ContactId", "Contact", updateable=False),
                _ref("LeadId", "Lead", updateable=False),
                _text("Status", 40, type="picklist"),
                _bool("HasResponded", createable=False, updateable=False),
                FieldSpec("FirstRespondedDate", "date", createable=False, updateable=False),
                _num("Total_Opens__c"),
                _num("Unique_Opens__c"),
                _num("Total_Clicks__c"),
                _num("Unique_Clicks__c"),
                FieldSpec("First_Open_Date__c", "datetime"),
                FieldSpec("Last_Open_Date__c", "datetime"),
                FieldSpec("Last_Click_Date__c", "datetime"),
                _text("Last_Clicked_URL__c", 255, type="url"),
                _text("Bounce_Type__c", 20),
                _text("Mailchimp_Key__c", 255, external_id=True),
            ),
        ),
        ObjectSpec(
            "CampaignMemberStatus",
            "01Y",
            _system_fields()
            + (
                _ref("CampaignId", "Campaign", required=True, updateable=False),
                _text("Label", 765, required=True, updateable=False),
                _bool("HasResponded"),
                _bool("IsDefault"),
                _num("SortOrder", "int"),
            ),
        ),
        ObjectSpec(
            "Task",
            "00T",
            _system_fields()
            + (
                _ref("WhoId", *PERSON_TYPES),
                _ref("WhatId", "Account", "Campaign"),
                _text("Subject", 255, type="combobox"),
                _text("Status", 40, type="picklist", required=True, default="Not Started"),
                _text("Priority", 40, type="picklist", required=True, default="Normal"),
                FieldSpec("ActivityDate", "date"),
                _text("Description", 32000, type="textarea"),
                _text("TaskSubtype", 40, type="picklist", updateable=False, restricted_values=TASK_SUBTYPES),
                _text("Type", 40, type="picklist"),
                _text("Clicked_URL__c", 255, type="url"),
                _text("Mailchimp_Event_Id__c", 255, external_id=True),
            ),
        ),
        ObjectSpec(
            "Note",
            "002",
            _system_fields()
            + (
                _ref("ParentId", *ANY_PARENT, required=True, updateable=False),
                _text("Title", 80, required=True),
                # Salesforce documents Note.Body as 32 KB of text.
                _text("Body", 32000, type="textarea"),
                _bool("IsPrivate"),
            ),
        ),
        ObjectSpec(
            "Attachment",
            "00P",
            _system_fields()
            + (
                _ref("ParentId", *ANY_PARENT, required=True, updateable=False),
                _text("Name", 255, required=True),
                # Length is the decoded size limit (25 MB); checked on the decoded bytes.
                FieldSpec("Body", "base64", length=25 * 1024 * 1024, required=True),
                _num("BodyLength", "int", createable=False, updateable=False),
                _text("ContentType", 120),
                _text("Description", 500, type="textarea"),
                _bool("IsPrivate"),
            ),
        ),
        # Salesforce Files and Enhanced Notes (rules and side effects: salesforce_content_rules). A ContentNote
        # is a ContentDocument of type SNOTE: both carry the 069 prefix, and 069 Ids resolve to ContentDocument.
        ObjectSpec(
            "ContentNote",
            CONTENT_DOCUMENT_PREFIX,
            _system_fields()
            + (
                _text("Title", 255, required=True),
                FieldSpec("Content", "base64", length=CONTENT_MAX_BYTES),
                _text("TextPreview", 300, createable=False, updateable=False, system=True),
                _num("ContentSize", "int", createable=False, updateable=False),
                _text("FileType", 20, createable=False, updateable=False, system=True),
                _text("FileExtension", 40, createable=False, updateable=False, system=True),
                _ref("LatestPublishedVersionId", "ContentVersion", createable=False, updateable=False),
                _ref("OwnerId", "User", createable=False, updateable=False),
            ),
        ),
        ObjectSpec(
            "ContentDocument",
            CONTENT_DOCUMENT_PREFIX,
            _system_fields()
            + (
                _text("Title", 255, createable=False),
                _ref("LatestPublishedVersionId", "ContentVersion", createable=False, updateable=False),
                _num("ContentSize", "int", createable=False, updateable=False),
                _text("FileType", 20, createable=False, updateable=False, system=True),
                _text("FileExtension", 40, createable=False, updateable=False, system=True),
                _ref("OwnerId", "User", createable=False, updateable=False),
            ),
        ),
        ObjectSpec(
            "ContentVersion",
            "068",
            _system_fields()
            + (
                _text("Title", 255),
                _text("PathOnClient", 500, updateable=False),
                # Only a new version changes a file: VersionData is set on create, never updated.
                FieldSpec("VersionData", "base64", length=CONTENT_MAX_BYTES, updateable=False),
                _ref("ContentDocumentId", "ContentDocument", updateable=False),
                _ref("FirstPublishLocationId", *ANY_PARENT, "User", updateable=False),
                _text("ReasonForChange", 1000),
                _text("Description", 1000, type="textarea"),
                _bool("IsLatest", createable=False, updateable=False),
                _text("VersionNumber", 20, createable=False, updateable=False, system=True),
                _text("Checksum", 50, createable=False, updateable=False, system=True),
                _num("ContentSize", "int", createable=False, updateable=False),
                _text("FileType", 20, createable=False, updateable=False, system=True),
                _text("FileExtension", 40, createable=False, updateable=False, system=True),
                _ref("OwnerId", "User", createable=False, updateable=False),
            ),
        ),
        ObjectSpec(
            "ContentDocumentLink",
            "06A",
            (
                FieldSpec("Id", "id", "Record ID", 18, createable=False, updateable=False, nillable=False, system=True),
                _ref("ContentDocumentId", "ContentDocument", required=True, updateable=False),
                _ref("LinkedEntityId", *ANY_PARENT, "User", required=True, updateable=False),
                _text("ShareType", 40, type="picklist", required=True, restricted_values=SHARE_TYPES),
                _text("Visibility", 40, type="picklist", default="AllUsers", restricted_values=VISIBILITIES),
            ),
        ),
    )
}

PREFIX_TO_OBJECT = {spec.key_prefix: name for name, spec in OBJECTS.items()}


def _with_fields(spec: ObjectSpec, *extra: FieldSpec, optional: tuple[str, ...] = ()) -> ObjectSpec:
    """``spec`` plus ``extra`` fields, with the fields named in ``optional`` no longer required."""
    kept = tuple(replace(f, required=False) if f.name in optional else f for f in spec.fields)
    return ObjectSpec(spec.name, spec.key_prefix, kept + extra, spec.label)


# An org with Person Accounts enabled: a person is an Account (FirstName/LastName, PersonEmail) with a hidden
# "person contact" the org creates and keeps in step (PersonContactId); Account.Name is then required only on
# business accounts (a person account's Name is its person's name). Describe shows these fields only there.
PERSON_ACCOUNT_OBJECTS: dict[str, ObjectSpec] = {
    **OBJECTS,
    "Account": _with_fields(
        OBJECTS["Account"],
        _text("FirstName", 40),
        _text("LastName", 80),
        _text("PersonEmail", 80, type="email"),
        _bool("IsPersonAccount", createable=False, updateable=False),
        _ref("PersonContactId", "Contact", createable=False, updateable=False),
        _bool("PersonHasOptedOutOfEmail"),
        optional=("Name",),
    ),
    "Contact": _with_fields(OBJECTS["Contact"], _bool("IsPersonAccount", createable=False, updateable=False)),
    # Filled by the org from the member's Contact (its Account; for a person contact, the person account).
    "CampaignMember": _with_fields(
        OBJECTS["CampaignMember"], _ref("AccountId", "Account", createable=False, updateable=False)
    ),
}


def object_spec(name: str, objects: dict[str, ObjectSpec] = OBJECTS) -> ObjectSpec | None:
    """The spec for an sObject name, matched case-insensitively as Salesforce does."""
    lowered = name.lower()
    return next((s for n, s in objects.items() if n.lower() == lowered), None)


def _checksum_suffix(id15: str) -> str:
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


def make_record_id(key_prefix: str, number: int) -> str:
    """An 18-character Id: key prefix, pod, a base-62 counter and the case-safe checksum."""
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
        if number == 0:
            break
    id15 = f"{key_prefix}5g0{digits.rjust(9, '0')}"
    return id15 + _checksum_suffix(id15)


@functools.lru_cache(maxsize=262_144)  # Bulk jobs repeat the same Campaign and person Ids
def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Id, or None when it is not a well-formed Id."""
    if not isinstance(value, str) or not _ID_SHAPE.match(value):
        return None
    id15 = value[:15]
    suffix = _checksum_suffix(id15)
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return id15 + suffix


def object_of_id(record_id: str) -> str | None:
    return PREFIX_TO_OBJECT.get(record_id[:3])


def format_datetime(moment: dt.datetime) -> str:
    """Salesforce's datetime wire format, always UTC: 2024-05-01T10:00:00.000+0000."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime:
    """Parse an ISO-8601 datetime as Salesforce accepts it (Z, +hh:mm or +hhmm offsets)."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    match = re.match(r"^(.*[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)([+-]\d\d)(\d\d)$", cleaned)
    if match:
        cleaned = f"{match.group(1)}{match.group(2)}:{match.group(3)}"
    moment = dt.datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


class ValueTypeError(ValueError):
    """A value that cannot be stored in a field of the given type."""


def coerce_value(spec: FieldSpec, value: Any, *, from_csv: bool) -> Any:
    """Turn a JSON or CSV value into the stored JSON value for the field, or raise ValueTypeError."""
    if value is None:
        return None
    kind = spec.type
    if kind in TEXT_TYPES or kind in REFERENCE_TYPES:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueTypeError(value)
        return value if isinstance(value, str) else str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise ValueTypeError(value)
    if kind in NUMBER_TYPES:
        if isinstance(value, bool):
            raise ValueTypeError(value)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError as exc:
                raise ValueTypeError(value) from exc
        if not isinstance(value, (int, float)) or value != value:
            raise ValueTypeError(value)
        if kind == "int":
            if float(value) != int(value):
                raise ValueTypeError(value)
            return int(value)
        return float(value)
    if kind == "date":
        if not isinstance(value, str):
            raise ValueTypeError(value)
        try:
            return dt.date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError as exc:
            raise ValueTypeError(value) from exc
    if kind == "datetime":
        if not isinstance(value, str):
            raise ValueTypeError(value)
        try:
            return format_datetime(parse_datetime(value))
        except ValueError as exc:
            raise ValueTypeError(value) from exc
    if kind == "base64":
        if not isinstance(value, str):
            raise ValueTypeError(value)
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueTypeError("not base64") from exc
        return value
    raise ValueTypeError(value)


def value_length(spec: FieldSpec, value: Any) -> int:
    """The length Salesforce checks against the field's limit (decoded bytes for base64)."""
    if spec.type == "base64":
        return len(value) * 3 // 4 - value.count("=", -2)
    return len(value)
