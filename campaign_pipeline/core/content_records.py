"""Desired Enhanced Notes and Files (mode notes for Lightning Experience): ContentNote, its links, the email File.

The enhanced choice writes, per campaign x matched Lead/Contact (key campaign + person, as the classic Note):

- a ``ContentNote``: ``Title`` as the classic Note's, ``Content`` the response summary as HTML the note editor
  accepts (``note_html``), base64-encoded as the API wants a base64 field;
- a ``ContentDocumentLink`` from that note to the person (``LinkedEntityId``), ``ShareType`` V (users who see
  the record may read, not edit, the compliance note) and ``Visibility`` AllUsers; its parent is the note, whose
  Id (the ContentDocument's) fills ``ContentDocumentId``;
- the sent email as a File: a ``ContentVersion`` with ``PathOnClient`` ``mailchimp-<campaign>.html``,
  ``VersionData`` base64 of the HTML and ``FirstPublishLocationId`` the person, which links the new document to
  the person in the same insert. A changed email becomes the next version of that document, never a new one.
"""

from __future__ import annotations

import base64

import pandas as pd

from campaign_pipeline.core.activity_records import desired_attachments, note_texts
from campaign_pipeline.core.salesforce_records import enforce_field_limits

# Ledger kinds of the three enhanced frames.
CONTENT_NOTE = "content_note"
CONTENT_NOTE_LINK = "content_note_link"
EMAIL_FILE = "email_file"
NOTE_SHARE_TYPE = "V"
NOTE_VISIBILITY = "AllUsers"
# A non-multipart (JSON) request carries at most 37.5 MB of base64, i.e. 28.125 MB of data; a cap a little below
# leaves room for the record's other fields. A larger email is refused with the reason, never truncated.
FILE_MAX_BYTES = 27_000_000

_HTML_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;"))
# Control characters other than newlines and tabs make Salesforce refuse a note.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


def note_html(text: pd.Series) -> pd.Series:
    """Plain text as ContentNote HTML: entities for & < > " ' (``&#39;``, since the note refuses ``&apos;``),
    paragraphs for blank-line breaks and ``<br>`` for line breaks (Salesforce strips raw newlines), no control
    characters. Unicode stays as it is: entities for it are refused too."""
    escaped = text.astype(str).str.replace(_CONTROL, "", regex=True).str.replace("\r\n", "\n", regex=False)
    for raw, entity in _HTML_ESCAPES:
        escaped = escaped.str.replace(raw, entity, regex=False)
    paragraphs = escaped.str.replace("\n\n", "</p><p>", regex=False).str.replace("\n", "<br>", regex=False)
    return "<p>" + paragraphs + "</p>"


def _base64(text: pd.Series) -> pd.Series:
    return text.map(lambda value: base64.b64encode(value.encode("utf-8")).decode("ascii"))


def desired_content_notes(
    member_statuses: pd.DataFrame,
    raw_email_events: pd.DataFrame,
    matches: pd.DataFrame,
    campaign_report: pd.DataFrame,
    *,
    field_limit_policy: str = "truncate",
) -> pd.DataFrame:
    """One ContentNote per campaign x matched person: the classic Note's title and whole text, as note HTML.

    The person's Salesforce Id is the last part of the key (``<campaign>|<person>``); ``desired_note_links``
    reads it from there, as the note itself has no field for it.
    """
    texts = note_texts(member_statuses, raw_email_events, matches, campaign_report)
    notes = texts.drop(columns=["ParentId", "Body"])
    notes["Content"] = _base64(note_html(texts["Body"])).astype(object)
    return enforce_field_limits(notes, "ContentNote", policy=field_limit_policy)


def desired_note_links(content_notes: pd.DataFrame) -> pd.DataFrame:
    """The link of each note to its person; the note (same key) is the parent that gives ContentDocumentId."""
    return pd.DataFrame(
        {
            "sync_key": content_notes["sync_key"].to_numpy(),
            "campaign_id": content_notes["campaign_id"].to_numpy(),
            "parent_key": content_notes["sync_key"].astype(object).to_numpy(),
            "reject_reason": content_notes["reject_reason"].to_numpy(),
            "truncated_fields": "",
            "sent_at_is_exact": content_notes["sent_at_is_exact"].to_numpy(),
            "LinkedEntityId": content_notes["sync_key"].str.rsplit("|", n=1).str[-1].astype(object).to_numpy(),
            "ShareType": NOTE_SHARE_TYPE,
            "Visibility": NOTE_VISIBILITY,
        }
    )


def desired_email_files(
    campaign_content: pd.DataFrame,
    member_statuses: pd.DataFrame,
    matches: pd.DataFrame,
    campaign_report: pd.DataFrame,
    *,
    max_bytes: int = FILE_MAX_BYTES,
) -> pd.DataFrame:
    """The sent email as a File on each matched person (key campaign + person), as ``desired_attachments``
    decides it (the same refusals), in ContentVersion fields."""
    attachments = desired_attachments(
        campaign_content,
        member_statuses,
        matches,
        campaign_report,
        max_bytes=max_bytes,
        holder="a Salesforce File sent through the REST API holds",
    )
    files = attachments.drop(columns=["ParentId", "Name", "ContentType", "Body", "Description"])
    files["Title"] = attachments["Name"].str.removesuffix(".html")
    files["PathOnClient"] = attachments["Name"]
    files["Description"] = attachments["Description"]
    files["VersionData"] = attachments["Body"]
    files["FirstPublishLocationId"] = attachments["ParentId"]
    return enforce_field_limits(files, "ContentVersion", extra_limits={"Description": 1000, "Title": 255})


def file_bytes(desired: pd.DataFrame) -> int:
    """Decoded bytes of a frame's file data (ContentNote.Content, ContentVersion.VersionData; 0 without)."""
    total = 0
    for column in ("Content", "VersionData"):
        if column not in desired.columns:
            continue
        encoded = desired[column][desired[column].notna()].astype(str)
        if len(encoded):
            total += int((encoded.str.len() * 3 // 4 - encoded.str[-2:].str.count("=")).sum())
    return total
