"""The per-request size limit of a JSON REST request (50 MB of text, 37.5 MB of data in base64), over HTTPS."""

from __future__ import annotations

import base64
import json

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from campaign_pipeline.sandbox.salesforce_routes import MAX_JSON_REQUEST_BYTES

# 14 MB of data is 18.7 MB in base64: one such Attachment fits a request, three do not.
BODY = base64.b64encode(b"m" * 14_000_000).decode("ascii")


def _refusal(error: SalesforceMalformedRequest) -> dict:
    return error.content[0]


def _attachments(parent_id: str) -> list[dict]:
    return [
        {"attributes": {"type": "Attachment"}, "ParentId": parent_id, "Name": f"mail-{n}.html", "Body": BODY}
        for n in range(3)
    ]


def test_a_collections_call_over_the_limit_is_refused_whole_though_each_record_fits(sf, org) -> None:
    parent = sf.Contact.create({"LastName": "Big", "Email": "big@example.com"})["id"]
    records = _attachments(parent)
    body = json.dumps({"allOrNone": False, "records": records})
    assert len(body) > MAX_JSON_REQUEST_BYTES
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite/sobjects", method="POST", data=body)
    assert refused.value.status == 400
    assert _refusal(refused.value) == {
        "message": "Maximum size of request reached. Maximum size of request is 52428800 bytes.",
        "errorCode": "JSON_PARSER_ERROR",
        "fields": [],
    }
    assert org.records("Attachment") == []
    # The same records, one request each, are taken: the limit is the request's, not the records'.
    for record in records:
        answer = sf.restful("composite/sobjects", method="POST", data=json.dumps({"records": [record]}))
        assert answer[0]["success"], answer
    assert len(org.records("Attachment")) == 3


def test_a_single_record_request_over_the_limit_is_refused(sf, org) -> None:
    parent = sf.Contact.create({"LastName": "Big", "Email": "big@example.com"})["id"]
    # 40 MB of data is 53.3 MB in base64: over the limit in one record's own request.
    data = base64.b64encode(b"v" * 40_000_000).decode("ascii")
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.ContentVersion.create(
            {"Title": "Big", "PathOnClient": "big.html", "VersionData": data, "FirstPublishLocationId": parent}
        )
    assert _refusal(refused.value)["errorCode"] == "JSON_PARSER_ERROR"
    assert "52428800 bytes" in _refusal(refused.value)["message"]
    with pytest.raises(SalesforceMalformedRequest) as patched:
        sf.Attachment.update("00P000000000001AAA", {"Body": data})
    assert _refusal(patched.value)["errorCode"] == "JSON_PARSER_ERROR"
    assert org.records("ContentVersion") == []
