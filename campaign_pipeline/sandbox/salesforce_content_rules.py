"""Files and Enhanced Notes rules of the sandbox org: ContentNote, ContentVersion, ContentDocument, ContentDocumentLink.

What Salesforce does and the emulator copies:
- a ContentVersion without ContentDocumentId creates its ContentDocument (version 1); with one, it is the next
  version of that document: the older versions lose ``IsLatest`` and the document's ``LatestPublishedVersionId``,
  Title and size follow the new one. VersionData is set on create only; PathOnClient is required, Title defaults
  to the file name. ``Checksum`` is the MD5 of the data. FirstPublishLocationId links the new document to that
  record (a ContentDocumentLink) and can only be given for a document's first version.
- a ContentNote is a ContentDocument of type SNOTE (same 069 Id); its Content must be HTML-safe UTF-8 (entities
  for & < > " ', no ``&apos;``, no control characters, only the tags the note editor knows), newlines are
  stripped, and each change of Content is a new version.
- ContentDocumentLink: one link per document and entity (DUPLICATE_VALUE otherwise); every document also has
  its owner's link. ContentDocument itself cannot be inserted through the API.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from campaign_pipeline.sandbox.salesforce_objects import API_USER_ID, OBJECTS, ObjectSpec
from campaign_pipeline.sandbox.salesforce_state import SfError, WriteResult, record_keys

if TYPE_CHECKING:
    from campaign_pipeline.sandbox.salesforce_writes import WritingStore

CONTENT_OBJECTS = frozenset({"ContentNote", "ContentVersion", "ContentDocument", "ContentDocumentLink"})
NOTE_REFUSED = (
    "Note can't be saved because it contains HTML tags or unescaped characters that are not allowed in a Note."
)
_NOTE_TAGS = "p|br|b|strong|i|em|u|s|strike|ul|ol|li|a|span"
_TAG = re.compile(rf"</?(?:{_NOTE_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FILE_TYPES = {"html": "HTML", "htm": "HTML", "txt": "TEXT", "pdf": "PDF", "csv": "CSV", "snote": "SNOTE"}


def note_content_refusal(encoded: str) -> str | None:
    """Why Salesforce would refuse this ContentNote.Content (base64), or None."""
    try:
        text = base64.b64decode(encoded).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return NOTE_REFUSED
    if _CONTROL.search(text) or "&apos;" in text:
        return NOTE_REFUSED
    outside_tags = _TAG.sub("", text)
    if "<" in outside_tags or ">" in outside_tags or "&" in _ENTITY.sub("", outside_tags):
        return NOTE_REFUSED
    return None


def _decoded(encoded: str | None) -> bytes:
    return base64.b64decode(encoded) if encoded else b""


def _file_facts(data: bytes, path: str | None) -> dict[str, Any]:
    extension = path.rsplit(".", 1)[1].lower() if path and "." in path else ""
    return {
        "Checksum": hashlib.md5(data).hexdigest(),  # noqa: S324 -- Salesforce's Checksum is MD5
        "ContentSize": len(data),
        "FileExtension": extension or None,
        "FileType": _FILE_TYPES.get(extension, extension.upper() or "UNKNOWN"),
        "OwnerId": API_USER_ID,
    }


class ContentRules:
    """Mixed into the record writer: validation before a write and the records Salesforce makes alongside it."""

    store: WritingStore
    cursor: Any
    spec: ObjectSpec
    operation: str

    def _content_rules(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        live = [(r, f, t) for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None]
        name = self.spec.name
        if name == "ContentDocument":
            for result, _, target in live:
                if target is None:
                    result.errors.append(
                        SfError("INVALID_TYPE", "ContentDocument cannot be inserted: insert a ContentVersion instead")
                    )
        elif name == "ContentNote":
            for result, final, target in live:
                if not str(final.get("Title") or "").strip():
                    result.errors.append(SfError("REQUIRED_FIELD_MISSING", "Required fields are missing: [Title]"))
                elif final.get("Content") and (target is None or final["Content"] != target.get("Content")):
                    refusal = note_content_refusal(final["Content"])
                    if refusal:
                        result.errors.append(SfError("FIELD_INTEGRITY_EXCEPTION", refusal, ("Content",)))
        elif name == "ContentVersion":
            for result, final, target in live:
                if target is not None:
                    continue
                missing = [field for field in ("PathOnClient", "VersionData") if not final.get(field)]
                if missing:
                    result.errors.append(
                        SfError(
                            "REQUIRED_FIELD_MISSING",
                            f"Required fields are missing: [{', '.join(missing)}]",
                            tuple(missing),
                        )
                    )
                elif final.get("ContentDocumentId") and final.get("FirstPublishLocationId"):
                    result.errors.append(
                        SfError(
                            "FIELD_INTEGRITY_EXCEPTION",
                            "FirstPublishLocationId can be set only on the first version of a document",
                            ("FirstPublishLocationId",),
                        )
                    )
        elif name == "ContentDocumentLink":
            self._link_duplicates([(r, f) for r, f, t in live if t is None])

    def _link_duplicates(self, new_links: list[tuple[WriteResult, dict[str, Any]]]) -> None:
        keys: dict[str, WriteResult] = {}
        for result, final in new_links:
            _, key = record_keys(self.spec, final)
            assert key is not None
            if key in keys:
                result.errors.append(_duplicate_link(final))
            else:
                keys[key] = result
        if not keys:
            return
        self.cursor.execute(
            f"SELECT member_key FROM {self.store.records_table} WHERE sobject = 'ContentDocumentLink' "
            "AND member_key = ANY(%s)",
            (list(keys),),
        )
        finals = {record_keys(self.spec, f)[1]: f for _, f in new_links}
        for (key,) in self.cursor.fetchall():
            keys[key].errors.append(_duplicate_link(finals[key]))

    # -- what Salesforce makes alongside a write ---------------------------------------------------------------

    def _content_before_write(self, new_records: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        """Derived fields, and for new ContentVersions their document (new or the next version of one)."""
        if self.spec.name == "ContentNote":
            for note in [*new_records, *changed]:
                content = note.get("Content")
                if content:
                    # Salesforce strips newlines from a note's content before saving it.
                    text = base64.b64decode(content).decode("utf-8").replace("\r", "").replace("\n", "")
                    note["Content"] = base64.b64encode(text.encode("utf-8")).decode("ascii")
                    note["TextPreview"] = html.unescape(re.sub(r"<[^>]*>", " ", text)).strip()[:300]
                data = _decoded(note.get("Content"))
                note.update({"ContentSize": len(data), "FileType": "SNOTE", "FileExtension": "snote"})
                note["OwnerId"] = API_USER_ID
        elif self.spec.name == "ContentVersion":
            self._place_versions(new_records)

    def _place_versions(self, versions: list[dict[str, Any]]) -> None:
        for version in versions:
            version.update(_file_facts(_decoded(version.get("VersionData")), version.get("PathOnClient")))
            if not version.get("Title"):
                version["Title"] = str(version["PathOnClient"]).rsplit("/", 1)[-1].rsplit(".", 1)[0]
            version["IsLatest"] = True
        first = [v for v in versions if not v.get("ContentDocumentId")]
        documents = [{"Title": v["Title"]} for v in first]
        self.store._insert(self.cursor, OBJECTS["ContentDocument"], documents)
        for version, document in zip(first, documents, strict=True):
            version["ContentDocumentId"] = document["Id"]
            version["VersionNumber"] = "1"
        later = [v for v in versions if v.get("VersionNumber") is None]
        if not later:
            return
        document_ids = sorted({v["ContentDocumentId"] for v in later})
        self.cursor.execute(
            f"""SELECT fields->>'ContentDocumentId', max((fields->>'VersionNumber')::int) FROM {self.store.records_table}
                WHERE sobject = 'ContentVersion' AND fields->>'ContentDocumentId' = ANY(%s) GROUP BY 1""",
            (document_ids,),
        )
        numbers: dict[str, int] = defaultdict(int, dict(self.cursor.fetchall()))
        for version in later:
            numbers[version["ContentDocumentId"]] += 1
            version["VersionNumber"] = str(numbers[version["ContentDocumentId"]])
        self._retire_versions(document_ids)

    def _retire_versions(self, document_ids: list[str]) -> None:
        """The documents' existing versions are no longer the latest."""
        self.cursor.execute(
            f"""UPDATE {self.store.records_table} SET fields = fields || '{{"IsLatest": false}}'::jsonb
                WHERE sobject = 'ContentVersion' AND fields->>'ContentDocumentId' = ANY(%s)""",
            (document_ids,),
        )

    def _content_after_write(
        self, new_records: list[dict[str, Any]], changed: list[dict[str, Any]], previous: dict[str, dict[str, Any]]
    ) -> None:
        """Versions, documents and links that follow from the records just written."""
        if self.spec.name == "ContentNote":
            revised = [n for n in changed if n.get("Content") != previous.get(n["Id"], {}).get("Content")]
            self._retire_versions([n["Id"] for n in revised])
            notes = [*new_records, *revised]
            versions = [
                {
                    "ContentDocumentId": note["Id"],
                    "Title": note["Title"],
                    "PathOnClient": f"{note['Title']}.snote",
                    "VersionData": note.get("Content"),
                    "IsLatest": True,
                    "VersionNumber": None,
                    **_file_facts(_decoded(note.get("Content")), "note.snote"),
                }
                for note in notes
            ]
            self._number_note_versions(versions)
            self.store._insert(self.cursor, OBJECTS["ContentVersion"], versions)
            for note, version in zip(notes, versions, strict=True):
                note["LatestPublishedVersionId"] = version["Id"]
            self.store._update(self.cursor, self.spec, notes)
            self._owner_links([n["Id"] for n in new_records])
        elif self.spec.name == "ContentVersion":
            self._follow_versions(new_records)

    def _number_note_versions(self, versions: list[dict[str, Any]]) -> None:
        self.cursor.execute(
            f"""SELECT fields->>'ContentDocumentId', max((fields->>'VersionNumber')::int) FROM {self.store.records_table}
                WHERE sobject = 'ContentVersion' AND fields->>'ContentDocumentId' = ANY(%s) GROUP BY 1""",
            ([v["ContentDocumentId"] for v in versions],),
        )
        numbers = dict(self.cursor.fetchall())
        for version in versions:
            version["VersionNumber"] = str(numbers.get(version["ContentDocumentId"], 0) + 1)

    def _follow_versions(self, versions: list[dict[str, Any]]) -> None:
        """Each document takes its newest version's Id, title and size; first versions get their links."""
        if not versions:
            return
        newest = {v["ContentDocumentId"]: v for v in versions}
        self.cursor.execute(
            f"SELECT fields FROM {self.store.records_table} WHERE sobject = 'ContentDocument' AND id = ANY(%s)",
            (list(newest),),
        )
        documents = [row[0] for row in self.cursor.fetchall()]
        for document in documents:
            version = newest[document["Id"]]
            document.update(
                {
                    "LatestPublishedVersionId": version["Id"],
                    "Title": version["Title"],
                    "ContentSize": version["ContentSize"],
                    "FileType": version["FileType"],
                    "FileExtension": version["FileExtension"],
                    "OwnerId": API_USER_ID,
                }
            )
        self.store._update(self.cursor, OBJECTS["ContentDocument"], documents)
        first = [v for v in versions if v["VersionNumber"] == "1"]
        self._owner_links([v["ContentDocumentId"] for v in first])
        published = [
            {
                "ContentDocumentId": v["ContentDocumentId"],
                "LinkedEntityId": v["FirstPublishLocationId"],
                "ShareType": "V",
                "Visibility": "AllUsers",
            }
            for v in first
            if v.get("FirstPublishLocationId")
        ]
        self.store._insert(self.cursor, OBJECTS["ContentDocumentLink"], published)

    def _owner_links(self, document_ids: list[str]) -> None:
        links = [
            {"ContentDocumentId": doc, "LinkedEntityId": API_USER_ID, "ShareType": "I", "Visibility": "AllUsers"}
            for doc in document_ids
        ]
        self.store._insert(self.cursor, OBJECTS["ContentDocumentLink"], links)


def _duplicate_link(final: dict[str, Any]) -> SfError:
    return SfError(
        "DUPLICATE_VALUE",
        f"Document with ID: {final.get('ContentDocumentId')} is already linked with the entity with ID: "
        f"{final.get('LinkedEntityId')}",
        ("LinkedEntityId",),
    )
