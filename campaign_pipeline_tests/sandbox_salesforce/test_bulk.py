"""Bulk API 2.0 ingest against the sandbox org, through simple-salesforce's bulk2 client and raw HTTP."""

from __future__ import annotations

import csv
import io

from simple_salesforce import format_soql


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _csv_file(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bulk_insert_reports_successes_and_failures(sf, org):
    records = [{"LastName": f"L{i}", "Email": f"p{i}@example.com"} for i in range(300)]
    records.insert(7, {"LastName": "", "Email": "missing-last-name@example.com"})
    [summary] = sf.bulk2.Contact.insert(records=records, wait=0.01)
    assert summary["numberRecordsProcessed"] == 301 and summary["numberRecordsFailed"] == 1
    job_id = summary["job_id"]
    successes = _rows(sf.bulk2.Contact.get_successful_records(job_id))
    failures = _rows(sf.bulk2.Contact.get_failed_records(job_id))
    assert len(successes) == 300 and all(r["sf__Created"] == "true" for r in successes)
    assert all(r["sf__Id"].startswith("003") and len(r["sf__Id"]) == 18 for r in successes)
    assert successes[0]["Email"] == "p0@example.com"  # original columns come back
    [failure] = failures
    assert failure["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    assert failure["Email"] == "missing-last-name@example.com"
    assert len(org.records("Contact")) == 300
    assert org.calls("bulk") >= 5 and org.calls("write") == 0


def test_bulk_upsert_empty_cell_keeps_value_and_na_sets_null(sf, org, tmp_path):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    people = [sf.Contact.create({"LastName": f"P{i}"})["id"] for i in range(2)]
    first = (
        "CampaignId,ContactId,Mailchimp_Key__c,Status,Total_Opens__c,Last_Clicked_URL__c\n"
        f"{campaign_id},{people[0]},k0,Sent,1,https://a.example/x\n"
        f"{campaign_id},{people[1]},k1,Responded,2,https://b.example/y\n"
    )
    [created] = sf.bulk2.CampaignMember.upsert(
        csv_file=_csv_file(tmp_path, "first.csv", first), external_id_field="Mailchimp_Key__c", wait=0.01
    )
    assert created["numberRecordsFailed"] == 0
    assert {r["sf__Created"] for r in _rows(sf.bulk2.CampaignMember.get_successful_records(created["job_id"]))} == {
        "true"
    }
    second = "Mailchimp_Key__c,Status,Total_Opens__c,Last_Clicked_URL__c\nk0,,5,#N/A\nK1,Responded,,\n"
    [updated] = sf.bulk2.CampaignMember.upsert(
        csv_file=_csv_file(tmp_path, "second.csv", second), external_id_field="Mailchimp_Key__c", wait=0.01
    )
    assert updated["numberRecordsFailed"] == 0
    assert {r["sf__Created"] for r in _rows(sf.bulk2.CampaignMember.get_successful_records(updated["job_id"]))} == {
        "false"
    }
    # External Ids match case-insensitively; K1 updated the record created as k1.
    stored = {r["Mailchimp_Key__c"].lower(): r for r in org.records("CampaignMember")}
    assert len(stored) == 2
    assert stored["k0"]["Status"] == "Sent" and stored["k0"]["Total_Opens__c"] == 5
    assert stored["k0"]["Last_Clicked_URL__c"] is None
    assert stored["k1"]["Total_Opens__c"] == 2 and stored["k1"]["Last_Clicked_URL__c"] == "https://b.example/y"
    assert stored["k1"]["HasResponded"] is True


def test_bulk_member_rules_fail_rows_not_the_job(sf, org, tmp_path):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    other_id = sf.Contact.create({"LastName": "Q"})["id"]
    csv_text = (
        "CampaignId,ContactId,Status,Mailchimp_Key__c\n"
        f"{campaign_id},{contact_id},Sent,a\n"
        f"{campaign_id},{contact_id},Sent,b\n"  # the same person again
        f"{campaign_id},{other_id},Clicked,c\n"  # status the Campaign lacks
        f"{campaign_id},003000000000000,Sent,d\n"  # a malformed / absent Contact
    )
    [summary] = sf.bulk2.CampaignMember.insert(csv_file=_csv_file(tmp_path, "members.csv", csv_text), wait=0.01)
    failures = {
        r["Mailchimp_Key__c"]: r["sf__Error"]
        for r in _rows(sf.bulk2.CampaignMember.get_failed_records(summary["job_id"]))
    }
    assert set(failures) == {"b", "c", "d"}
    assert failures["b"].startswith("DUPLICATE_VALUE")
    assert failures["c"].startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    assert failures["d"].split(":")[0] in ("MALFORMED_ID", "INVALID_CROSS_REFERENCE_KEY")
    assert [r["Mailchimp_Key__c"] for r in org.records("CampaignMember")] == ["a"]


def test_bulk_job_lifecycle_over_raw_http(org):
    session = org.requests_session()
    headers = {"Authorization": f"Bearer {org.session_id}", "Content-Type": "application/json"}
    base = f"{org.instance_url}/services/data/v{org.api_version}/jobs/ingest"
    job = session.post(
        base, json={"object": "Task", "operation": "insert", "contentType": "CSV", "lineEnding": "LF"}, headers=headers
    ).json()
    assert job["state"] == "Open" and job["id"].startswith("750")
    upload = session.put(
        f"{base}/{job['id']}/batches",
        data=b"Subject,Mailchimp_Event_Id__c\nOpened email,e1\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert upload.status_code == 201
    closed = session.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=headers)
    assert closed.status_code == 200 and closed.json()["state"] == "UploadComplete"
    info = session.get(f"{base}/{job['id']}", headers=headers).json()
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 1 and info["numberRecordsFailed"] == 0
    assert "Sforce-Limit-Info" in closed.headers
    late = session.put(
        f"{base}/{job['id']}/batches", data=b"Subject\nx\n", headers={**headers, "Content-Type": "text/csv"}
    )
    assert late.status_code >= 400
    [task] = org.records("Task")
    assert task["Status"] == "Not Started" and task["Priority"] == "Normal"


def test_bulk_job_with_unknown_column_fails_as_a_whole(org):
    session = org.requests_session()
    headers = {"Authorization": f"Bearer {org.session_id}", "Content-Type": "application/json"}
    base = f"{org.instance_url}/services/data/v{org.api_version}/jobs/ingest"
    job = session.post(base, json={"object": "Contact", "operation": "insert"}, headers=headers).json()
    session.put(
        f"{base}/{job['id']}/batches",
        data=b"LastName,Shoe_Size__c\nX,44\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    session.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=headers)
    info = session.get(f"{base}/{job['id']}", headers=headers).json()
    assert info["state"] == "Failed" and "Shoe_Size__c" in info["errorMessage"]
    assert org.records("Contact") == []


def test_bulk_insert_of_many_members_is_set_based(sf, org, tmp_path):
    campaign_id = sf.Campaign.create({"Name": "Big"})["id"]
    org.store.insert_raw("Contact", [{"LastName": f"P{i}", "Email": f"p{i}@example.com"} for i in range(5000)])
    contact_ids = [r["Id"] for r in org.records("Contact")]
    lines = ["CampaignId,ContactId,Status,Mailchimp_Key__c"] + [
        f"{campaign_id},{cid},Sent,m{i}" for i, cid in enumerate(contact_ids)
    ]
    [summary] = sf.bulk2.CampaignMember.insert(
        csv_file=_csv_file(tmp_path, "many.csv", "\n".join(lines) + "\n"), wait=0.01
    )
    assert summary["numberRecordsProcessed"] == 5000 and summary["numberRecordsFailed"] == 0
    count = sf.query(format_soql("SELECT COUNT() FROM CampaignMember WHERE CampaignId = {}", campaign_id))
    assert count["totalSize"] == 5000


def test_large_jobs_are_processed_in_the_background_and_polling_sees_them_finish(sf, org, monkeypatch):
    from campaign_pipeline.sandbox import salesforce_bulk

    monkeypatch.setattr(salesforce_bulk, "BULK_SYNC_BYTES", 10)
    [summary] = sf.bulk2.Contact.insert(
        records=[{"LastName": f"L{i}"} for i in range(500)] + [{"LastName": ""}], wait=0.01
    )
    assert summary["numberRecordsProcessed"] == 501 and summary["numberRecordsFailed"] == 1
    assert len(org.records("Contact")) == 500
    assert org.store.job_info(summary["job_id"])["state"] == "JobComplete"


def test_a_job_whose_processing_process_died_reports_failed(org):
    import json

    job = org.store.create_job({"object": "Contact", "operation": "insert"}, org.api_version)
    stale = {**job, "state": "InProgress", "systemModstamp": "2020-01-01T00:00:00.000+0000"}
    with org.store.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{org.store.schema}".bulk_jobs SET info = %s WHERE id = %s', (json.dumps(stale), job["id"])
        )
    info = org.store.job_info(job["id"])
    assert info["state"] == "Failed" and "interrupted" in info["errorMessage"]


def test_a_row_with_the_wrong_number_of_cells_fails_alone(sf, org, tmp_path):
    text = "LastName,Email\nGood,good@example.com\nShort\nAlso good,also@example.com\n"
    [summary] = sf.bulk2.Contact.insert(csv_file=_csv_file(tmp_path, "ragged.csv", text), wait=0.01)
    assert summary["numberRecordsFailed"] == 1
    [failure] = _rows(sf.bulk2.Contact.get_failed_records(summary["job_id"]))
    assert failure["sf__Error"].startswith("INVALID_INPUT") and failure["LastName"] == "Short"
    assert sorted(c["LastName"] for c in org.records("Contact")) == ["Also good", "Good"]


def test_bulk_job_for_an_object_with_a_binary_field_is_refused(org):
    session = org.requests_session()
    headers = {"Authorization": f"Bearer {org.session_id}", "Content-Type": "application/json"}
    base = f"{org.instance_url}/services/data/v{org.api_version}/jobs/ingest"
    refused = session.post(base, json={"object": "Attachment", "operation": "insert"}, headers=headers)
    assert refused.status_code == 400
    [error] = refused.json()
    assert error["errorCode"] == "INVALIDJOB" and "Body" in error["message"]


def test_a_background_job_counts_its_records_batch_by_batch_while_in_progress(sf, org, monkeypatch):
    from campaign_pipeline.sandbox import salesforce_bulk

    monkeypatch.setattr(salesforce_bulk, "BULK_SYNC_BYTES", 10)
    monkeypatch.setattr(salesforce_bulk, "INTERNAL_BATCH_ROWS", 100)
    seen: list[tuple[str, int, int]] = []
    write = org.store.write

    def write_and_watch(*args, **kwargs):
        # What a status call would answer as each internal batch starts.
        with org.store.cursor() as cursor:
            cursor.execute(f'SELECT info FROM "{org.store.schema}".bulk_jobs')
            [(info,)] = cursor.fetchall()
        seen.append((info["state"], info.get("numberRecordsProcessed", 0), info.get("numberRecordsFailed", 0)))
        return write(*args, **kwargs)

    monkeypatch.setattr(org.store, "write", write_and_watch)
    records = [{"LastName": f"L{i}"} for i in range(350)]
    records[150] = {"LastName": ""}
    [summary] = sf.bulk2.Contact.insert(records=records, wait=0.01)
    assert seen == [("InProgress", 0, 0), ("InProgress", 100, 0), ("InProgress", 200, 1), ("InProgress", 300, 1)]
    assert summary["numberRecordsProcessed"] == 350 and summary["numberRecordsFailed"] == 1
    assert len(org.records("Contact")) == 349
