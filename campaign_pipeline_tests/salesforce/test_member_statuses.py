"""CampaignMemberStatus values as Salesforce requires them, end to end over HTTPS against the sandbox org's rules.

Explicit, unique SortOrder after the Campaign's existing statuses; Sent (which Salesforce makes on a new Campaign)
adopted, not doubled; one default, responded statuses kept; a lost answer after commit never doubles a label.
"""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from campaign_pipeline.core.vocabulary import MEMBER_STATUS_DISPLAY_ORDER
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import sync_desired_records

from .conftest import AUDIENCE, PROFILE, statuses_for
from .test_lost_answers import run_losing

KEYED = SyncProfile.model_validate(
    {"field_mapping": {**PROFILE.field_mapping.model_dump(), "campaign_key_field": "Mailchimp_Campaign_Id__c"}}
)


def _statuses_by_label(org, campaign_id: str | None = None) -> dict[str, dict]:
    rows = [s for s in org.records("CampaignMemberStatus") if campaign_id in (None, s["CampaignId"])]
    assert len({s["Label"].lower() for s in rows}) == len(rows), "a label twice on one Campaign"
    return {s["Label"]: s for s in rows}


def _assert_salesforce_rules(org) -> None:
    """What Salesforce requires of every Campaign: unique labels and sort orders, one default, one responded."""
    by_campaign: dict[str, list[dict]] = {}
    for status in org.records("CampaignMemberStatus"):
        by_campaign.setdefault(status["CampaignId"], []).append(status)
    for statuses in by_campaign.values():
        orders = [s["SortOrder"] for s in statuses]
        assert None not in orders and len(set(orders)) == len(orders), orders
        assert sum(bool(s["IsDefault"]) for s in statuses) == 1
        assert any(s["HasResponded"] for s in statuses)


def _status_bodies(client) -> list[dict]:
    """Record the JSON bodies of CampaignMemberStatus writes the client sends (a requests response hook)."""
    sent: list[dict] = []

    def hook(response, *args, **kwargs):
        body = response.request.body
        if body and b"CampaignMemberStatus" in (body if isinstance(body, bytes) else body.encode()):
            sent.extend(json.loads(body)["records"])

    client.sf.session.hooks["response"].append(hook)
    return sent


def test_a_new_campaign_gets_its_statuses_numbered_after_salesforces_own(sandbox_org) -> None:
    client = sandbox_org.client()
    sent = _status_bodies(client)
    desired = sandbox_org.desired(statuses_for(AUDIENCE[:4]), client=client)
    report = sync_desired_records(client, sandbox_org.ledger, desired, PROFILE.sync)
    assert report.failures.empty, report.failures.to_dict("records")
    org = sandbox_org.org
    statuses = _statuses_by_label(org)
    # Salesforce's own Sent (default) and Responded stay as they were; Sent is adopted, never created again.
    assert (statuses["Sent"]["SortOrder"], statuses["Sent"]["IsDefault"]) == (1, True)
    assert (statuses["Responded"]["SortOrder"], statuses["Responded"]["HasResponded"]) == (2, True)
    ours = [label for label in MEMBER_STATUS_DISPLAY_ORDER if label != "Sent"]
    assert [statuses[label]["SortOrder"] for label in ours] == [3, 4, 5, 6]
    assert {label: statuses[label]["HasResponded"] for label in ours} == {
        "Opened": True,
        "Clicked": True,
        "Bounced": False,
        "Unsubscribed": False,
    }
    # The numbers were ours, on the wire: no create left SortOrder for the org to pick.
    assert [(r["Label"], r["SortOrder"]) for r in sent] == list(zip(ours, [3, 4, 5, 6], strict=True))
    assert report.outcomes["campaign_member_status"].created == 4
    assert report.outcomes["campaign_member_status"].unchanged == 1  # Sent, adopted as it was
    _assert_salesforce_rules(org)
    assert sandbox_org.sync(statuses_for(AUDIENCE[:4])).write_calls == 0


def test_statuses_follow_the_ones_a_campaign_already_has(sandbox_org) -> None:
    """A Campaign made in Salesforce (found by its external ID) with a user's statuses, one of them ours."""
    sf = sandbox_org.org.client()
    campaign_id = sf.Campaign.create({"Name": "Made by hand", "Mailchimp_Campaign_Id__c": "cmp1"})["id"]
    sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Webinar", "SortOrder": 7})
    sf.CampaignMemberStatus.create({"CampaignId": campaign_id, "Label": "Opened", "SortOrder": 3})
    report = sandbox_org.sync(statuses_for(AUDIENCE[:4], status="Clicked"), KEYED)
    assert report.failures.empty, report.failures.to_dict("records")
    org = sandbox_org.org
    [campaign] = org.records("Campaign")
    assert campaign["Id"] == campaign_id
    statuses = _statuses_by_label(org, campaign_id)
    orders = {label: s["SortOrder"] for label, s in statuses.items()}
    assert orders == {
        "Sent": 1,
        "Responded": 2,
        "Opened": 3,
        "Webinar": 7,
        "Clicked": 8,
        "Bounced": 9,
        "Unsubscribed": 10,
    }
    # The user's Opened is adopted and made a response; its place in the picklist is the user's.
    assert statuses["Opened"]["HasResponded"] is True
    assert report.outcomes["campaign_member_status"].created == 3
    assert report.outcomes["campaign_member_status"].updated == 1
    _assert_salesforce_rules(org)
    assert {m["Status"] for m in org.records("CampaignMember")} == {"Clicked"}


def test_a_status_create_whose_answer_is_lost_never_doubles_a_label(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:5])
    run_losing(sandbox_org, statuses, PROFILE, r"^create \d+ CampaignMemberStatus record\(s\) via sObject Collections")
    org = sandbox_org.org
    # Salesforce made the statuses; the run did not know and sent no second create.
    assert Counter(s["Label"] for s in org.records("CampaignMemberStatus"))["Opened"] == 1
    again = sandbox_org.sync(statuses)
    assert again.failures.empty, again.failures.to_dict("records")
    assert again.outcomes["campaign_member_status"].created == 0
    labels = Counter(s["Label"] for s in org.records("CampaignMemberStatus"))
    assert set(labels.values()) == {1} and len(labels) == 6
    _assert_salesforce_rules(org)
    assert len(org.records("CampaignMember")) == again.outcomes["campaign_member"].desired
    assert sandbox_org.sync(statuses).write_calls == 0


def test_two_campaigns_in_one_call_each_get_their_own_numbers(sandbox_org) -> None:
    statuses = pd.concat([statuses_for(AUDIENCE[:3], "cmpA"), statuses_for(AUDIENCE[3:6], "cmpB")], ignore_index=True)
    report = sandbox_org.sync(statuses)
    assert report.failures.empty, report.failures.to_dict("records")
    _assert_salesforce_rules(sandbox_org.org)
    for campaign in sandbox_org.org.records("Campaign"):
        orders = sorted(s["SortOrder"] for s in _statuses_by_label(sandbox_org.org, campaign["Id"]).values())
        assert orders == [1, 2, 3, 4, 5, 6]
