"""Limits and rules of the sandbox org that Salesforce documents (issue #12), driven over HTTPS by the real client."""

from __future__ import annotations

import csv
import io

import pytest
from simple_salesforce import format_soql
from simple_salesforce.bulk2 import LineEnding
from simple_salesforce.exceptions import SalesforceMalformedRequest

from campaign_pipeline.sandbox import salesforce_bulk
from campaign_pipeline.sandbox.salesforce_objects import TASK_SUBTYPES


def _error(exc: SalesforceMalformedRequest) -> dict:
    return exc.content[0]  # type: ignore[attr-defined,no-any-return]


def _jobs(org):
    session = org.requests_session()
    headers = {"Authorization": f"Bearer {org.session_id}", "Content-Type": "application/json"}
    base = f"{org.instance_url}/services/data/v{org.api_version}/jobs/ingest"
    return session, headers, base


def _run_job(org, line_ending: str, data: bytes) -> dict:
    session, headers, base = _jobs(org)
    job = session.post(
        base, json={"object": "Contact", "operation": "insert", "lineEnding": line_ending}, headers=headers
    )
    job_id = job.json()["id"]
    upload = session.put(f"{base}/{job_id}/batches", data=data, headers={**headers, "Content-Type": "text/csv"})
    assert upload.status_code == 201
    session.patch(f"{base}/{job_id}", json={"state": "UploadComplete"}, headers=headers)
    return session.get(f"{base}/{job_id}", headers=headers).json()


# --- Bulk API 2.0 ---------------------------------------------------------------------------------


def test_the_upload_limit_is_150_mb_of_base64_encoded_data():
    assert salesforce_bulk.MAX_UPLOAD_BASE64_BYTES == 150 * 1024 * 1024


def test_an_upload_over_the_limit_is_refused_and_the_job_stays_open(org, monkeypatch):
    # The limit scaled down so the test moves kilobytes, not 150 MB; the rule is the same.
    monkeypatch.setattr(salesforce_bulk, "MAX_UPLOAD_BASE64_BYTES", 4_000)
    session, headers, base = _jobs(org)
    job_id = session.post(base, json={"object": "Contact", "operation": "insert"}, headers=headers).json()["id"]
    rows = "".join(f"Person{i:05d}\n" for i in range(300))  # 3,600 bytes: 4,800 once base64-encoded
    refused = session.put(
        f"{base}/{job_id}/batches", data=f"LastName\n{rows}".encode(), headers={**headers, "Content-Type": "text/csv"}
    )
    assert refused.status_code == 413
    [error] = refused.json()
    assert error["errorCode"] == "INVALIDBATCH" and "base64" in error["message"]
    assert session.get(f"{base}/{job_id}", headers=headers).json()["state"] == "Open"
    smaller = session.put(
        f"{base}/{job_id}/batches", data=b"LastName\nSmall\n", headers={**headers, "Content-Type": "text/csv"}
    )
    assert smaller.status_code == 201
    session.patch(f"{base}/{job_id}", json={"state": "UploadComplete"}, headers=headers)
    assert session.get(f"{base}/{job_id}", headers=headers).json()["numberRecordsProcessed"] == 1


def test_a_crlf_job_through_the_real_client_is_read_and_answered_with_crlf(sf, org):
    records = [{"LastName": f"L{i}", "Email": f"crlf{i}@example.com"} for i in range(5)]
    [summary] = sf.bulk2.Contact.insert(records=records, line_ending=LineEnding.CRLF, wait=0.01)
    assert summary["numberRecordsProcessed"] == 5 and summary["numberRecordsFailed"] == 0
    assert sorted(r["LastName"] for r in org.records("Contact")) == [f"L{i}" for i in range(5)]
    results = sf.bulk2.Contact.get_successful_records(summary["job_id"])
    assert results.count("\r\n") == 6 and "\r\r" not in results
    assert [r["LastName"] for r in csv.DictReader(io.StringIO(results))] == [f"L{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("declared", "data"),
    [("LF", b"LastName,Email\r\nA,a@example.com\r\n"), ("CRLF", b"LastName,Email\nA,a@example.com\n")],
)
def test_data_whose_line_endings_differ_from_the_job_fails_the_job(org, declared, data):
    info = _run_job(org, declared, data)
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {declared}"
    )
    assert org.records("Contact") == []


# --- sObject Collections ----------------------------------------------------------------------------


def _alternating(chunks: int) -> list[dict]:
    """Contacts and Leads alternating, so every record starts a new chunk."""
    records = []
    for index in range(chunks):
        if index % 2 == 0:
            records.append({"attributes": {"type": "Contact"}, "LastName": f"C{index}"})
        else:
            records.append({"attributes": {"type": "Lead"}, "LastName": f"L{index}", "Company": "Co"})
    return records


def test_collections_take_ten_chunks_of_consecutive_types(sf, org):
    results = sf.restful("composite/sobjects", method="POST", json={"records": _alternating(10)})
    assert [r["success"] for r in results] == [True] * 10
    assert [r["id"][:3] for r in results] == ["003", "00Q"] * 5  # results in request order
    assert len(org.records("Contact")) == len(org.records("Lead")) == 5


def test_collections_refuse_more_than_ten_chunks_and_write_nothing(sf, org):
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite/sobjects", method="POST", json={"records": _alternating(11)})
    error = _error(refused.value)
    assert error["errorCode"] == "EXCEEDED_MAX_TYPES_LIMIT" and "10 chunks" in error["message"]
    assert org.records("Contact") == [] and org.records("Lead") == []
    # The same 11 records grouped by type are two chunks, and go through.
    grouped = sorted(_alternating(11), key=lambda r: r["attributes"]["type"])
    assert all(r["success"] for r in sf.restful("composite/sobjects", method="POST", json={"records": grouped}))


# --- Task.TaskSubtype -------------------------------------------------------------------------------


def test_task_subtype_takes_the_documented_values_and_describe_lists_them(sf, org):
    assert set(TASK_SUBTYPES) == {"Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"}
    for subtype in TASK_SUBTYPES:
        sf.Task.create({"Subject": subtype, "TaskSubtype": subtype})
    assert sorted(t["TaskSubtype"] for t in org.records("Task")) == sorted(TASK_SUBTYPES)
    field = next(f for f in sf.Task.describe()["fields"] if f["name"] == "TaskSubtype")
    assert field["restrictedPicklist"] is True
    assert [v["value"] for v in field["picklistValues"]] == list(TASK_SUBTYPES)


def test_an_unknown_task_subtype_is_refused_as_a_restricted_picklist(sf, org):
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Task.create({"Subject": "Opened email", "TaskSubtype": "Mailchimp"})
    error = _error(refused.value)
    assert error["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert error["fields"] == ["TaskSubtype"] and "Mailchimp" in error["message"]
    assert org.records("Task") == []


# --- CampaignMemberStatus -----------------------------------------------------------------------------


def _statuses(sf, campaign_id: str) -> dict[str, tuple]:
    soql = format_soql(
        "SELECT Label, SortOrder, IsDefault, HasResponded FROM CampaignMemberStatus WHERE CampaignId = {}",
        campaign_id,
    )
    return {r["Label"]: (r["SortOrder"], r["IsDefault"], r["HasResponded"]) for r in sf.query(soql)["records"]}


def _status_id(sf, campaign_id: str, label: str) -> str:
    soql = format_soql("SELECT Id FROM CampaignMemberStatus WHERE CampaignId = {} AND Label = {}", campaign_id, label)
    return sf.query(soql)["records"][0]["Id"]


def test_a_new_campaign_has_sent_by_default_and_responded_with_their_sort_orders(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    assert _statuses(sf, campaign_id) == {"Sent": (1, True, False), "Responded": (2, False, True)}


def test_the_default_moves_but_never_disappears(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    sent = _status_id(sf, campaign_id, "Sent")
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.CampaignMemberStatus.update(sent, {"IsDefault": False})
    assert _error(refused.value)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Opened", "SortOrder": 3, "IsDefault": True})
    assert _statuses(sf, campaign_id) == {
        "Sent": (1, False, False),
        "Responded": (2, False, True),
        "Opened": (3, True, False),
    }


def test_a_campaign_keeps_at_least_one_responded_status(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    responded = _status_id(sf, campaign_id, "Responded")
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.CampaignMemberStatus.update(responded, {"HasResponded": False})
    assert _error(refused.value)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as not_deleted:
        sf.CampaignMemberStatus.delete(responded)
    assert _error(not_deleted.value)["errorCode"] == "DELETE_FAILED"
    sf.CampaignMemberStatus.create(
        {"CampaignId": campaign_id, "Label": "Clicked", "SortOrder": 3, "HasResponded": True}
    )
    sf.CampaignMemberStatus.update(responded, {"HasResponded": False})  # another status now counts as responded
    assert _statuses(sf, campaign_id)["Responded"] == (2, False, False)


def test_a_status_members_carry_cannot_be_deleted(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    opened = sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Opened", "SortOrder": 3})["id"]
    sf.CampaignMember.create({"CampaignId": campaign_id, "ContactId": contact_id, "Status": "Opened"})
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.CampaignMemberStatus.delete(opened)
    assert _error(refused.value)["errorCode"] == "DELETE_FAILED"
    unused = sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Bounced", "SortOrder": 4})["id"]
    assert sf.CampaignMemberStatus.delete(unused) == 204


def test_labels_salesforce_created_cannot_be_created_again(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    for label in ("Sent", "RESPONDED"):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": label, "SortOrder": 9})
        assert _error(refused.value)["errorCode"] == "DUPLICATE_VALUE" and _error(refused.value)["fields"] == ["Label"]


# --- Campaign hierarchy -----------------------------------------------------------------------------------


def test_a_campaign_hierarchy_takes_known_parents_and_no_cycles(sf):
    top = sf.Campaign.create({"Name": "Programme"})["id"]
    child = sf.Campaign.create({"Name": "Welcome series", "ParentId": top})["id"]
    assert sf.Campaign.get(child)["ParentId"] == top
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.Campaign.create({"Name": "Orphan", "ParentId": top[:5] + "0" * 10})
    assert _error(unknown.value)["errorCode"] in ("INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID")
    with pytest.raises(SalesforceMalformedRequest) as contact_parent:
        sf.Campaign.create({"Name": "Odd", "ParentId": sf.Contact.create({"LastName": "P"})["id"]})
    assert _error(contact_parent.value)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    for parent, campaign in ((child, top), (top, top)):
        with pytest.raises(SalesforceMalformedRequest) as cycle:
            sf.Campaign.update(campaign, {"ParentId": parent})
        assert _error(cycle.value)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
        assert _error(cycle.value)["fields"] == ["ParentId"]
    assert sf.Campaign.get(top)["ParentId"] is None


def test_a_campaign_hierarchy_has_at_most_five_levels(sf):
    parent = None
    for level in range(5):
        parent = sf.Campaign.create({"Name": f"Level {level + 1}", **({"ParentId": parent} if parent else {})})["id"]
    with pytest.raises(SalesforceMalformedRequest) as too_deep:
        sf.Campaign.create({"Name": "Level 6", "ParentId": parent})
    assert _error(too_deep.value)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert "at most 5 levels" in _error(too_deep.value)["message"]
