"""The fault matrix's comparison counts every lost, duplicated, unexpected and changed record, Ids aside."""

from __future__ import annotations

from bench.fault_compare import compare, snapshot

LEAD = ("Lead", "00Q1", {"Id": "00Q1", "Email": "Ana@Example.com", "LastName": "A"})
CAMPAIGN = ("Campaign", "7011", {"Id": "7011", "Name": "Spring", "NumberSent": 10, "CreatedDate": "t1"})


def _member(record_id: str, status: str, campaign: str = "7011") -> tuple:
    return ("CampaignMember", record_id, {"Id": record_id, "CampaignId": campaign, "LeadId": "00Q1", "Status": status})


def _task(record_id: str, subject: str) -> tuple:
    return ("Task", record_id, {"Id": record_id, "WhoId": "00Q1", "WhatId": "7011", "Subject": subject})


CLEAN = [LEAD, CAMPAIGN, _member("00v1", "Opened"), _task("00T1", "Opened"), _task("00T2", "Clicked")]


def test_the_same_records_under_other_ids_and_dates_are_equal():
    other = [
        ("Lead", "00Q9", {"Id": "00Q9", "Email": "Ana@Example.com", "LastName": "A"}),
        ("Campaign", "7019", {"Id": "7019", "Name": "Spring", "NumberSent": 10, "CreatedDate": "t2"}),
        ("CampaignMember", "00v9", {"Id": "00v9", "CampaignId": "7019", "LeadId": "00Q9", "Status": "Opened"}),
        ("Task", "00T8", {"Id": "00T8", "WhoId": "00Q9", "WhatId": "7019", "Subject": "Clicked"}),
        ("Task", "00T9", {"Id": "00T9", "WhoId": "00Q9", "WhatId": "7019", "Subject": "Opened"}),
    ]
    counts = compare(snapshot(CLEAN), snapshot(other))
    assert (counts["lost"], counts["duplicated"], counts["unexpected"], counts["mismatched"]) == (0, 0, 0, 0)


def test_a_duplicate_a_lost_record_and_a_changed_member_are_each_counted():
    faulted = [
        LEAD,
        CAMPAIGN,
        _member("00v1", "Clicked"),  # same key, other status
        _task("00T1", "Opened"),
        _task("00T3", "Opened"),  # a second copy
    ]  # the Clicked task is missing
    counts = compare(snapshot(CLEAN), snapshot(faulted))
    assert (counts["lost"], counts["duplicated"], counts["unexpected"], counts["mismatched"]) == (1, 1, 0, 1)
    assert counts["by_object"] == {"CampaignMember": {"mismatched": 1}, "Task": {"lost": 1, "duplicated": 1}}


def test_a_record_the_clean_run_does_not_have_is_unexpected():
    counts = compare(snapshot(CLEAN), snapshot([*CLEAN, _member("00v2", "Sent", campaign="7012")]))
    assert counts["unexpected"] == 1 and counts["lost"] == 0


def test_a_responded_date_the_org_stamped_on_another_day_is_not_a_difference_but_its_absence_is():
    def member(record_id: str, responded: str | None) -> tuple:
        fields = {"Id": record_id, "CampaignId": "7011", "LeadId": "00Q1", "Status": "Opened"}
        return ("CampaignMember", record_id, {**fields, "HasResponded": True, "FirstRespondedDate": responded})

    clean = [LEAD, CAMPAIGN, member("00v1", "2026-12-01")]
    next_day = compare(snapshot(clean), snapshot([LEAD, CAMPAIGN, member("00v2", "2026-12-02")]))
    assert next_day["mismatched"] == 0
    never = compare(snapshot(clean), snapshot([LEAD, CAMPAIGN, member("00v2", None)]))
    assert never["mismatched"] == 1


def test_a_field_written_as_null_equals_one_never_set_but_not_one_with_a_value():
    def member(record_id: str, **fields) -> tuple:
        return ("CampaignMember", record_id, {"Id": record_id, "CampaignId": "7011", "LeadId": "00Q1", **fields})

    clean = [LEAD, CAMPAIGN, member("00v1", Status="Sent")]  # made through Bulk: an empty cell sets nothing
    through_collections = [LEAD, CAMPAIGN, member("00v2", Status="Sent", Last_Clicked_URL__c=None)]
    assert compare(snapshot(clean), snapshot(through_collections))["mismatched"] == 0
    with_a_value = [LEAD, CAMPAIGN, member("00v2", Status="Sent", Last_Clicked_URL__c="https://example.com/a")]
    assert compare(snapshot(clean), snapshot(with_a_value))["mismatched"] == 1
