"""The sandbox org's Files and Enhanced Notes over HTTPS with simple-salesforce: versions, links, note content rules."""

from __future__ import annotations

import base64
import hashlib

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _error_code(error: SalesforceMalformedRequest) -> str:
    return error.content[0]["errorCode"]


@pytest.fixture
def contact_id(sf) -> str:
    return sf.Contact.create({"LastName": "Files", "Email": "files@example.com"})["id"]


def _blob(sf, org, url: str) -> bytes:
    return sf.session.get(org.instance_url + url, headers=sf.headers).content


def test_a_content_version_makes_its_document_and_link_and_a_new_version_replaces_it(sf, org, contact_id):
    first = sf.ContentVersion.create(
        {
            "Title": "Email",
            "PathOnClient": "mailchimp-c1.html",
            "VersionData": _b64("<p>v1</p>"),
            "FirstPublishLocationId": contact_id,
        }
    )
    assert first["id"].startswith("068")
    version = sf.ContentVersion.get(first["id"])
    document_id = version["ContentDocumentId"]
    assert document_id.startswith("069") and version["IsLatest"] and version["VersionNumber"] == "1"
    assert version["Checksum"] == hashlib.md5(b"<p>v1</p>").hexdigest() and version["FileType"] == "HTML"
    # Queries return VersionData as its blob URL; the bytes come from that URL.
    assert _blob(sf, org, version["VersionData"]) == b"<p>v1</p>"
    links = sf.query_all(
        f"SELECT LinkedEntityId, ShareType FROM ContentDocumentLink WHERE ContentDocumentId = '{document_id}'"
    )
    assert {r["LinkedEntityId"] for r in links["records"]} >= {contact_id}

    second = sf.ContentVersion.create(
        {"ContentDocumentId": document_id, "PathOnClient": "mailchimp-c1.html", "VersionData": _b64("<p>v2</p>")}
    )
    versions = sf.query_all(
        f"SELECT Id, IsLatest, VersionNumber FROM ContentVersion WHERE ContentDocumentId = '{document_id}'"
    )["records"]
    assert {(v["Id"], v["IsLatest"], v["VersionNumber"]) for v in versions} == {
        (first["id"], False, "1"),
        (second["id"], True, "2"),
    }
    document = sf.ContentDocument.get(document_id)
    assert document["LatestPublishedVersionId"] == second["id"] and document["ContentSize"] == len(b"<p>v2</p>")
    assert len(org.records("ContentDocument")) == 1

    # VersionData is never updated in place, and a later version cannot claim a first publish location.
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentVersion.update(second["id"], {"VersionData": _b64("<p>v3</p>")})
    assert _error_code(error.value) == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentVersion.create(
            {
                "ContentDocumentId": document_id,
                "PathOnClient": "x.html",
                "VersionData": _b64("x"),
                "FirstPublishLocationId": contact_id,
            }
        )
    assert _error_code(error.value) == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentVersion.create({"Title": "no data", "PathOnClient": "x.html"})
    assert _error_code(error.value) == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentDocument.create({})
    assert _error_code(error.value) == "INVALID_TYPE"


def test_one_link_per_document_and_entity_and_link_queries_need_an_id_filter(sf, org, contact_id):
    note = sf.ContentNote.create({"Title": "Email response", "Content": _b64("<p>Hello</p>")})
    assert note["id"].startswith("069")
    link = {"ContentDocumentId": note["id"], "LinkedEntityId": contact_id, "ShareType": "V", "Visibility": "AllUsers"}
    assert sf.ContentDocumentLink.create(link)["id"].startswith("06A")
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentDocumentLink.create(link)
    assert _error_code(error.value) == "DUPLICATE_VALUE"
    assert "is already linked with the entity" in error.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentDocumentLink.create({**link, "LinkedEntityId": contact_id, "ShareType": "X"})
    assert _error_code(error.value) in ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "DUPLICATE_VALUE")
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.query_all("SELECT Id FROM ContentDocumentLink WHERE ShareType = 'V'")
    assert _error_code(error.value) == "MALFORMED_QUERY"
    found = sf.query_all(f"SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId IN ('{contact_id}')")
    assert found["totalSize"] == 1


def test_note_content_must_be_html_safe_and_each_change_is_a_new_version(sf, org):
    for unsafe in ("Tom & Jerry", "a < b", "it&apos;s", "<script>x</script>", "bell\x07"):
        with pytest.raises(SalesforceMalformedRequest) as error:
            sf.ContentNote.create({"Title": "t", "Content": _b64(unsafe)})
        assert _error_code(error.value) == "FIELD_INTEGRITY_EXCEPTION", unsafe
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.ContentNote.create({"Title": "   ", "Content": _b64("<p>x</p>")})
    assert _error_code(error.value) == "REQUIRED_FIELD_MISSING"

    note = sf.ContentNote.create({"Title": "Notes", "Content": _b64("<p>Tom &amp; Jerry&#39;s Grüße</p>\n<p>2</p>")})
    stored = sf.ContentNote.get(note["id"])
    # Newlines are stripped; the content reads back through its blob URL.
    assert _blob(sf, org, stored["Content"]).decode() == "<p>Tom &amp; Jerry&#39;s Grüße</p><p>2</p>"
    assert stored["TextPreview"].startswith("Tom & Jerry's Grüße") and stored["FileType"] == "SNOTE"
    first_version = stored["LatestPublishedVersionId"]
    sf.ContentNote.update(note["id"], {"Content": _b64("<p>changed</p>")})
    again = sf.ContentNote.get(note["id"])
    assert again["LatestPublishedVersionId"] != first_version
    latest = sf.query_all(
        f"SELECT Id FROM ContentVersion WHERE ContentDocumentId = '{note['id']}' AND IsLatest = true"
    )["records"]
    assert [r["Id"] for r in latest] == [again["LatestPublishedVersionId"]]
