"""The sandbox org driven by the real simple-salesforce client over HTTPS: sObjects, Collections, SOQL, errors."""

from __future__ import annotations

import pytest
from simple_salesforce import format_soql
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)


def _error_code(exc: Exception) -> str:
    return exc.content[0]["errorCode"]  # type: ignore[attr-defined]


def test_create_read_update_delete_contact(sf, org):
    created = sf.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
    assert created["success"] is True and created["errors"] == []
    contact_id = created["id"]
    assert len(contact_id) == 18 and contact_id.startswith("003")
    record = sf.Contact.get(contact_id)
    assert record["Email"] == "ada@example.com" and record["Name"] == "Ada Lovelace"
    assert record["attributes"]["type"] == "Contact"
    assert sf.Contact.update(contact_id, {"LastName": "Byron"}) == 204
    assert sf.Contact.get(contact_id)["LastName"] == "Byron"
    assert sf.Contact.delete(contact_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(contact_id)
    assert org.records("Contact") == []


def test_describe_lists_fields_with_properties(sf):
    described = sf.CampaignMember.describe()
    fields = {f["name"]: f for f in described["fields"]}
    assert described["keyPrefix"] == "00v"
    assert fields["Mailchimp_Key__c"]["externalId"] is True
    assert fields["Status"]["length"] == 40
    assert fields["CampaignId"]["createable"] is True and fields["CampaignId"]["updateable"] is False
    assert fields["CampaignId"]["nillable"] is False
    for key in ("name", "type", "length", "createable", "updateable", "externalId", "nillable"):
        assert key in fields["Total_Opens__c"]


@pytest.mark.parametrize(
    "sobject, data, code, field",
    [
        ("Contact", {"FirstName": "No last name"}, "REQUIRED_FIELD_MISSING", "LastName"),
        ("Lead", {"LastName": "X"}, "REQUIRED_FIELD_MISSING", "Company"),
        ("Campaign", {"Name": "x" * 81}, "STRING_TOO_LONG", "Name"),
        ("Contact", {"LastName": "X", "Shoe_Size__c": 44}, "INVALID_FIELD", "Shoe_Size__c"),
        ("Contact", {"LastName": "X", "Name": "Computed"}, "INVALID_FIELD_FOR_INSERT_UPDATE", "Name"),
        ("Contact", {"LastName": "X", "AccountId": "garbage"}, "MALFORMED_ID", "AccountId"),
        ("Task", {"Subject": "s" * 256}, "STRING_TOO_LONG", "Subject"),
        ("Note", {"ParentId": "0035g0000000001AAA", "Title": "t"}, "INVALID_CROSS_REFERENCE_KEY", "ParentId"),
        ("Contact", {"LastName": "X", "Email": "not an email"}, "INVALID_EMAIL_ADDRESS", "Email"),
    ],
)
def test_validation_errors_in_salesforce_shape(sf, sobject, data, code, field):
    with pytest.raises(SalesforceMalformedRequest) as error:
        getattr(sf, sobject).create(data)
    body = error.value.content[0]
    assert body["errorCode"] == code
    assert field in body["fields"]
    assert body["message"]


def test_upsert_by_external_id_creates_then_updates(sf, org):
    campaign = sf.Campaign.upsert("Mailchimp_Campaign_Id__c/mc-1", {"Name": "Spring"}, raw_response=True)
    assert campaign.status_code == 201 and campaign.json()["created"] is True
    again = sf.Campaign.upsert("Mailchimp_Campaign_Id__c/mc-1", {"Name": "Spring 2"}, raw_response=True)
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["id"] == campaign.json()["id"]
    [stored] = org.records("Campaign")
    assert stored["Name"] == "Spring 2"
    assert sf.Campaign.get_by_custom_id("Mailchimp_Campaign_Id__c", "MC-1")["Id"] == stored["Id"]


def test_campaign_member_rules_duplicate_and_unknown_status(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    lead_id = sf.Lead.create({"LastName": "L", "Company": "Co"})["id"]
    member = sf.CampaignMember.create({"CampaignId": campaign_id, "ContactId": contact_id})
    assert member["id"].startswith("00v")
    assert sf.CampaignMember.get(member["id"])["Status"] == "Sent"  # the Campaign's default status
    with pytest.raises(SalesforceMalformedRequest) as duplicate:
        sf.CampaignMember.create({"CampaignId": campaign_id, "ContactId": contact_id, "Status": "Responded"})
    assert _error_code(duplicate.value) == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.CampaignMember.create({"CampaignId": campaign_id, "LeadId": lead_id, "Status": "Clicked"})
    assert _error_code(unknown.value) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    # Once the Campaign has the status, the same member is accepted and counts as responded.
    sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Clicked", "HasResponded": True})
    clicked = sf.CampaignMember.create({"CampaignId": campaign_id, "LeadId": lead_id, "Status": "Clicked"})
    assert sf.CampaignMember.get(clicked["id"])["HasResponded"] is True


def test_member_status_label_and_sort_order_are_unique_per_campaign(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as label:
        sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "sent"})
    assert _error_code(label.value) == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceMalformedRequest) as order:
        sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Opened", "SortOrder": 1})
    assert _error_code(order.value) == "DUPLICATE_VALUE"
    opened = sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Opened"})
    assert sf.CampaignMemberStatus.get(opened["id"])["SortOrder"] == 3


def test_collections_partial_failure_and_all_or_none(sf, org):
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Good", "Email": "good@example.com"},
        {"attributes": {"type": "Contact"}, "Email": "nolastname@example.com"},
    ]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert results[0]["success"] is True and results[0]["id"].startswith("003")
    assert results[1]["success"] is False and results[1]["id"] is None
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[1]["errors"][0]["fields"] == ["LastName"]
    assert len(org.records("Contact")) == 1

    rolled = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert [r["success"] for r in rolled] == [False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert len(org.records("Contact")) == 1


def test_collections_update_and_upsert(sf, org):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    people = [sf.Contact.create({"LastName": f"P{i}"})["id"] for i in range(3)]
    members = [
        {
            "attributes": {"type": "CampaignMember"},
            "CampaignId": campaign_id,
            "ContactId": p,
            "Mailchimp_Key__c": f"k{i}",
            "Total_Opens__c": 1,
        }
        for i, p in enumerate(people)
    ]
    first = sf.restful(
        "composite/sobjects/CampaignMember/Mailchimp_Key__c",
        method="PATCH",
        json={"allOrNone": False, "records": members},
    )
    assert [r["created"] for r in first] == [True, True, True]
    members[1]["Total_Opens__c"] = 5
    second = sf.restful(
        "composite/sobjects/CampaignMember/Mailchimp_Key__c",
        method="PATCH",
        json={"allOrNone": False, "records": members},
    )
    assert [r["created"] for r in second] == [False, False, False]
    assert [r["id"] for r in second] == [r["id"] for r in first]
    stored = {r["Mailchimp_Key__c"]: r for r in org.records("CampaignMember")}
    assert stored["k1"]["Total_Opens__c"] == 5 and stored["k0"]["Total_Opens__c"] == 1

    updates = [
        {"attributes": {"type": "CampaignMember"}, "Id": first[0]["id"], "Status": "Responded"},
        {"attributes": {"type": "CampaignMember"}, "Id": first[2]["id"], "Status": "Nope"},
    ]
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": updates})
    assert results[0]["success"] is True
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_collections_refuse_more_than_200_records(sf, org):
    records = [{"attributes": {"type": "Contact"}, "LastName": f"L{i}"} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert _error_code(error.value) == "EXCEEDED_ID_LIMIT"
    assert org.records("Contact") == []


def test_soql_pages_at_2000_rows(sf, org):
    sf.bulk2.Contact.insert(records=[{"LastName": f"L{i}"} for i in range(4500)], wait=0.01)
    first = sf.query("SELECT Id, LastName FROM Contact")
    assert first["totalSize"] == 4500 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/")
    everything = sf.query_all("SELECT Id FROM Contact")
    ids = [r["Id"] for r in everything["records"]]
    assert len(ids) == 4500 and len(set(ids)) == 4500
    limited = sf.query("SELECT Id FROM Contact LIMIT 2500")
    assert limited["totalSize"] == 2500
    assert len(sf.query_all("SELECT Id FROM Contact LIMIT 2500")["records"]) == 2500
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 4500


def test_email_match_is_case_insensitive_and_quotes_are_safe(sf):
    quoted = sf.Contact.create({"LastName": "OBrien", "Email": "O'Brien@Example.com"})["id"]
    sf.Contact.create({"LastName": "Other", "Email": "other@example.com"})
    found = sf.query(format_soql("SELECT Id, Email FROM Contact WHERE Email = {}", "o'brien@example.COM"))
    assert [r["Id"] for r in found["records"]] == [quoted]
    in_list = sf.query(format_soql("SELECT Id FROM Contact WHERE Email IN {}", ["o'brien@example.com", "x@y.z"]))
    assert [r["Id"] for r in in_list["records"]] == [quoted]
    # A value crafted to widen the query matches nothing instead of everything.
    hostile = sf.query(format_soql("SELECT Id FROM Contact WHERE Email = {}", "x' OR Email != 'y"))
    assert hostile["totalSize"] == 0
    with pytest.raises(SalesforceMalformedRequest) as broken:
        sf.query("SELECT Id FROM Contact WHERE Email = 'o'brien@example.com'")
    assert _error_code(broken.value) == "MALFORMED_QUERY"


def test_soql_filters_converted_leads_like_and_not_equal(sf, org):
    org.store.insert_raw(
        "Lead",
        [
            {"LastName": "A", "Company": "C", "Email": "a@x.com", "IsConverted": True, "Status": "Closed - Converted"},
            {
                "LastName": "B",
                "Company": "C",
                "Email": "b@x.com",
                "IsConverted": False,
                "Status": "Open - Not Contacted",
            },
            {"LastName": "C", "Company": "C", "Status": "Open - Not Contacted"},
        ],
    )
    open_leads = sf.query("SELECT Email FROM Lead WHERE IsConverted = false AND Email != null")
    assert [r["Email"] for r in open_leads["records"]] == ["b@x.com"]
    assert sf.query("SELECT Id FROM Lead WHERE Email LIKE 'A@%'")["totalSize"] == 1
    # SOQL's != keeps rows whose field is null.
    assert sf.query("SELECT Id FROM Lead WHERE Email != 'a@x.com'")["totalSize"] == 2


def test_unknown_field_in_query_is_invalid_field(sf):
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.query("SELECT Id, Favourite_Colour__c FROM Contact")
    assert _error_code(error.value) == "INVALID_FIELD"


def test_uri_longer_than_16384_is_refused_with_414(sf):
    emails = [f"person{i}@example.com" for i in range(900)]
    with pytest.raises(SalesforceGeneralError) as error:
        sf.query(format_soql("SELECT Id FROM Contact WHERE Email IN {}", emails))
    assert error.value.status == 414


def test_attachment_body_limit_and_blob(sf, org):
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    import base64

    body = base64.b64encode(b"<html>hello</html>").decode()
    attachment = sf.Attachment.create(
        {"ParentId": contact_id, "Name": "email.html", "Body": body, "ContentType": "text/html"}
    )
    assert attachment["id"].startswith("00P")
    stored = sf.Attachment.get(attachment["id"])
    assert stored["BodyLength"] == len(b"<html>hello</html>")
    blob = sf.session.get(org.instance_url + stored["Body"], headers=sf.headers)
    assert blob.content == b"<html>hello</html>"
    note = sf.Note.create({"ParentId": contact_id, "Title": "t" * 80, "Body": "b" * 32000})
    assert note["id"].startswith("002")
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.Note.create({"ParentId": contact_id, "Title": "t" * 81})
    assert _error_code(error.value) == "STRING_TOO_LONG"


def test_mixed_type_collection_all_or_none_rolls_back_every_type(sf, org):
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Fine"},
        {"attributes": {"type": "Lead"}, "LastName": "No company"},
    ]
    rolled = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert [r["success"] for r in rolled] == [False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert rolled[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert org.records("Contact") == [] and org.records("Lead") == []
    records[1]["Company"] = "Co"
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert created[0]["id"].startswith("003") and created[1]["id"].startswith("00Q")


def test_campaign_member_without_campaign_is_malformed_id(sf):
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.CampaignMember.create({"ContactId": contact_id})
    assert _error_code(error.value) == "MALFORMED_ID"


def test_describe_global_retrieve_and_delete_collections(sf, org):
    names = {s["name"]: s["keyPrefix"] for s in sf.describe()["sobjects"]}
    assert names["CampaignMember"] == "00v" and names["Task"] == "00T"
    ids = [sf.Contact.create({"LastName": f"L{i}", "Email": f"l{i}@example.com"})["id"] for i in range(3)]
    fetched = sf.restful(f"composite/sobjects/Contact?ids={','.join(ids)}&fields=Id,Email")
    assert [r["Email"] for r in fetched] == ["l0@example.com", "l1@example.com", "l2@example.com"]
    deleted = sf.restful(f"composite/sobjects?ids={ids[0]},{ids[1]}", method="DELETE")
    assert [r["success"] for r in deleted] == [True, True]
    assert [c["Id"] for c in org.records("Contact")] == [ids[2]]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Campaign.get_by_custom_id("Mailchimp_Campaign_Id__c", "never-synced")


def test_deleting_a_campaign_removes_its_members_and_statuses(sf, org):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    sf.CampaignMember.create({"CampaignId": campaign_id, "ContactId": contact_id})
    sf.Campaign.delete(campaign_id)
    assert org.records("CampaignMember") == [] and org.records("CampaignMemberStatus") == []
    assert len(org.records("Contact")) == 1


def test_update_of_a_create_only_field_is_refused(sf):
    campaign_id = sf.Campaign.create({"Name": "C"})["id"]
    other_campaign = sf.Campaign.create({"Name": "D"})["id"]
    contact_id = sf.Contact.create({"LastName": "P"})["id"]
    member_id = sf.CampaignMember.create({"CampaignId": campaign_id, "ContactId": contact_id})["id"]
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.CampaignMember.update(member_id, {"CampaignId": other_campaign})
    assert _error_code(error.value) == "INVALID_FIELD_FOR_INSERT_UPDATE"
    from campaign_pipeline.sandbox.salesforce_objects import make_record_id

    with pytest.raises(SalesforceResourceNotFound):
        sf.CampaignMember.update(make_record_id("00v", 10**9), {"Status": "Sent"})


def test_the_same_id_twice_in_one_update_fails_the_repeat(sf, org):
    contact_id = sf.Contact.create({"LastName": "Once"})["id"]
    records = [
        {"attributes": {"type": "Contact"}, "Id": contact_id, "LastName": "First"},
        {"attributes": {"type": "Contact"}, "Id": contact_id, "LastName": "Second"},
    ]
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": records})
    assert results[0]["success"] is True
    assert results[1]["errors"][0]["statusCode"] == "DUPLICATE_ID"
    assert org.records("Contact")[0]["LastName"] == "First"
