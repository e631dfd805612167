"""Bulk API 2.0 query jobs, queryAll with deleted records, and SystemModstamp, as the sandbox org serves them."""

from __future__ import annotations

import csv
import io

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest


def _rows(pages) -> list[dict[str, str]]:
    return [row for page in pages for row in csv.DictReader(io.StringIO(page))]


def test_simple_salesforce_bulk2_query_pages_through_the_sforce_locator(sf, org):
    ids = [sf.Contact.create({"LastName": f"P{i}", "Email": f"P{i}@Example.com"})["id"] for i in range(7)]
    pages = list(sf.bulk2.Contact.query("SELECT Id, Email, SystemModstamp FROM Contact", max_records=3, wait=0.01))
    assert len(pages) == 3  # 3 + 3 + 1 rows, each page with its header
    rows = _rows(pages)
    assert [row["Id"] for row in rows] == ids
    assert rows[0]["Email"] == "P0@Example.com"
    # Bulk CSV writes instants with a Z; they are the record's SystemModstamp.
    assert rows[0]["SystemModstamp"].endswith("Z") and len(rows[0]["SystemModstamp"]) == 24
    posts = [path for method, path, _ in org.call_log if method == "POST" and path.endswith("/jobs/query")]
    assert len(posts) == 1


def test_a_query_job_is_a_snapshot_and_refuses_what_bulk_refuses(sf, org):
    first = sf.Contact.create({"LastName": "Before", "Email": "before@example.com"})["id"]
    job = sf.restful("jobs/query", method="POST", json={"operation": "query", "query": "SELECT Id FROM Contact"})
    assert job["state"] == "UploadComplete" and job["object"] == "Contact"
    sf.Contact.create({"LastName": "After", "Email": "after@example.com"})
    assert sf.restful(f"jobs/query/{job['id']}")["state"] == "JobComplete"
    response = sf.session.get(f"{sf.base_url}jobs/query/{job['id']}/results", headers=sf.headers)
    assert response.status_code == 200 and response.headers["Sforce-Locator"] == "null"
    assert response.headers["Sforce-NumberOfRecords"] == "1"
    assert response.text.splitlines() == ["Id", first]
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("jobs/query", method="POST", json={"operation": "query", "query": "SELECT COUNT() FROM Contact"})
    assert refused.value.content[0]["errorCode"] == "API_ERROR"
    bad = sf.session.get(f"{sf.base_url}jobs/query/{job['id']}/results?locator=nonsense", headers=sf.headers)
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_LOCATOR"


def test_updates_move_system_modstamp_and_deletes_are_seen_only_by_query_all(sf, org):
    kept = sf.Contact.create({"LastName": "Kept", "Email": "kept@example.com"})["id"]
    gone = sf.Lead.create({"LastName": "Gone", "Company": "X", "Email": "gone@example.com"})["id"]
    before = sf.query(f"SELECT SystemModstamp FROM Contact WHERE Id = '{kept}'")["records"][0]["SystemModstamp"]
    sf.Contact.update(kept, {"Email": "kept.new@example.com"})
    after = sf.query(f"SELECT SystemModstamp FROM Contact WHERE Id = '{kept}'")["records"][0]["SystemModstamp"]
    assert after >= before
    changed = sf.query(f"SELECT Id FROM Contact WHERE SystemModstamp >= {after}")["records"]
    assert [record["Id"] for record in changed] == [kept]

    sf.Lead.delete(gone)
    assert sf.query("SELECT Id FROM Lead")["records"] == []
    everything = sf.query("SELECT Id, IsDeleted, SystemModstamp FROM Lead", include_deleted=True)["records"]
    assert [(record["Id"], record["IsDeleted"]) for record in everything] == [(gone, True)]
    assert everything[0]["SystemModstamp"] >= after  # the deletion is a change
    live = sf.query("SELECT Id, IsDeleted FROM Contact", include_deleted=True)["records"]
    assert [(record["Id"], record["IsDeleted"]) for record in live] == [(kept, False)]
    # A Bulk queryAll job sees the deleted record too; a query job does not.
    assert [row["Id"] for row in _rows(sf.bulk2.Lead.query_all("SELECT Id FROM Lead", wait=0.01))] == [gone]
    assert _rows(sf.bulk2.Lead.query("SELECT Id FROM Lead", wait=0.01)) == []


def test_converting_a_lead_marks_it_converted_and_moves_its_modstamp(sf, org):
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Acme", "Email": "lee@example.com"})["id"]
    before = sf.Lead.get(lead)["SystemModstamp"]
    contact = org.convert_lead(lead)
    converted = sf.Lead.get(lead)
    assert converted["IsConverted"] is True and converted["ConvertedContactId"] == contact
    assert converted["SystemModstamp"] >= before
    assert sf.Contact.get(contact)["Email"] == "lee@example.com"


def test_a_big_query_job_runs_in_the_background_and_its_polls_see_it_finish(sf, org, monkeypatch):
    """Over BULK_QUERY_SYNC_ROWS the create answers at once (no client timeout on a million rows); polls see
    InProgress, then JobComplete, and the pages hold every row as a small job's would."""
    import time

    from campaign_pipeline.sandbox import salesforce_bulk_query

    monkeypatch.setattr(salesforce_bulk_query, "BULK_QUERY_SYNC_ROWS", 2)
    monkeypatch.setattr(salesforce_bulk_query, "SNAPSHOT_BATCH_ROWS", 2)  # several batches of the server cursor
    ids = [sf.Contact.create({"LastName": f"B{i}", "Email": f"b{i}@example.com"})["id"] for i in range(5)]
    job = sf.restful("jobs/query", method="POST", json={"operation": "query", "query": "SELECT Id FROM Contact"})
    assert job["state"] == "UploadComplete"
    states = []
    for _ in range(200):
        states.append(sf.restful(f"jobs/query/{job['id']}")["state"])
        if states[-1] != "InProgress":
            break
        time.sleep(0.05)
    assert states[-1] == "JobComplete" and set(states) <= {"InProgress", "JobComplete"}
    response = sf.session.get(f"{sf.base_url}jobs/query/{job['id']}/results", headers=sf.headers)
    assert response.text.splitlines() == ["Id", *ids]
    assert response.headers["Sforce-NumberOfRecords"] == "5"
