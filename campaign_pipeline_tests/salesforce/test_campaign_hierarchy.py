"""Campaign hierarchy end to end over HTTPS: automation emails (and, optionally, regular campaigns) under a parent."""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.campaign_hierarchy import campaign_parent_keys
from campaign_pipeline.core.events import parse_campaign_report
from campaign_pipeline.mailchimp.assets import with_automation_workflows, with_rss_campaigns
from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import sync_desired_records
from campaign_pipeline.sandbox.mailchimp_api import MailchimpFaults, MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline_tests.mailchimp.conftest import resource_on

from .conftest import AUDIENCE, PROFILE, statuses_for
from .frames import campaign_report
from .test_lost_answers import LosingClient

WORKFLOW = "a1b2c3d4e5"


def automation_report(campaign_id: str, workflow: str = WORKFLOW, title: str = "Welcome series") -> pd.DataFrame:
    report = campaign_report(campaign_id, title=f"Welcome email {campaign_id}", campaign_type="automation")
    return report.assign(automation_id=workflow, automation_title=title)


def with_hierarchy(profile: SyncProfile = PROFILE, **settings) -> SyncProfile:
    return profile.model_copy(update={"campaign_hierarchy": profile.campaign_hierarchy.model_copy(update=settings)})


KEYED = PROFILE.model_copy(
    update={
        "field_mapping": PROFILE.field_mapping.model_copy(update={"campaign_key_field": "Mailchimp_Campaign_Id__c"})
    }
)


def _campaigns(org) -> dict[str, dict]:
    return {c["Name"]: c for c in org.records("Campaign")}


def test_the_emails_of_one_workflow_share_one_parent_created_once(sandbox_org) -> None:
    org = sandbox_org.org
    first = sandbox_org.sync(statuses_for(AUDIENCE[:4], "auto1"), report_frame=automation_report("auto1"))
    assert first.failures.empty, first.failures.to_dict("records")
    assert first.outcomes["parent_campaign"].created == 1
    # The second email of the workflow syncs in a run (a partition) of its own: the parent is found in the ledger.
    second = sandbox_org.sync(statuses_for(AUDIENCE[4:8], "auto2"), report_frame=automation_report("auto2"))
    assert second.failures.empty, second.failures.to_dict("records")
    assert second.outcomes["parent_campaign"].created == 0 and second.outcomes["parent_campaign"].unchanged == 1
    campaigns = _campaigns(org)
    assert set(campaigns) == {"Welcome series", "Welcome email auto1", "Welcome email auto2"}
    parent = campaigns["Welcome series"]
    assert parent.get("ParentId") is None and f"mailchimp-workflow-{WORKFLOW}" in parent["Description"]
    assert (
        campaigns["Welcome email auto1"].get("ParentId")
        == campaigns["Welcome email auto2"].get("ParentId")
        == parent["Id"]
    )
    # A regular campaign has no parent unless the profile asks for one.
    regular = sandbox_org.sync(statuses_for(AUDIENCE[8:10], "reg1"), report_frame=campaign_report("reg1", title="News"))
    assert regular.outcomes["parent_campaign"].desired == 0
    assert _campaigns(org)["News"].get("ParentId") is None
    # Nothing new: not one write, for either email.
    for cid, people in (("auto1", AUDIENCE[:4]), ("auto2", AUDIENCE[4:8])):
        assert sandbox_org.sync(statuses_for(people, cid), report_frame=automation_report(cid)).write_calls == 0


def test_regular_campaigns_go_under_one_named_parent_that_a_rename_updates_in_place(sandbox_org) -> None:
    profile = with_hierarchy(regular_parent="Newsletters")
    report = pd.concat([campaign_report("reg1", title="March news"), campaign_report("reg2", title="April news")])
    statuses = pd.concat([statuses_for(AUDIENCE[:3], "reg1"), statuses_for(AUDIENCE[3:6], "reg2")], ignore_index=True)
    assert sandbox_org.sync(statuses, profile, report_frame=report).failures.empty
    campaigns = _campaigns(sandbox_org.org)
    parent_id = campaigns["Newsletters"]["Id"]
    assert campaigns["March news"].get("ParentId") == campaigns["April news"].get("ParentId") == parent_id
    renamed = sandbox_org.sync(statuses, with_hierarchy(regular_parent="Monthly newsletters"), report_frame=report)
    assert renamed.outcomes["parent_campaign"].updated == 1 and renamed.outcomes["parent_campaign"].created == 0
    campaigns = _campaigns(sandbox_org.org)
    assert campaigns["Monthly newsletters"]["Id"] == parent_id and "Newsletters" not in campaigns


def test_a_parent_whose_create_answer_is_lost_is_adopted_not_doubled(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:4], "auto1")
    client = LosingClient(sandbox_org.org, r"^create 1 Campaign record\(s\) via sObject Collections")
    desired = sandbox_org.desired(statuses, report_frame=automation_report("auto1"), client=client)
    lost = sync_desired_records(client, sandbox_org.ledger, desired, PROFILE.sync)
    # The parent went first: Salesforce made it, the run never heard, and its Campaign waited for it.
    assert client.lost_in and lost.outcomes["parent_campaign"].created == 0
    assert [c["Name"] for c in sandbox_org.org.records("Campaign")] == ["Welcome series"]
    again = sandbox_org.sync(statuses, report_frame=automation_report("auto1"))
    assert again.failures.empty, again.failures.to_dict("records")
    campaigns = _campaigns(sandbox_org.org)
    assert sorted(c["Name"] for c in sandbox_org.org.records("Campaign")) == ["Welcome email auto1", "Welcome series"]
    assert campaigns["Welcome email auto1"].get("ParentId") == campaigns["Welcome series"]["Id"]
    assert sandbox_org.sync(statuses, report_frame=automation_report("auto1")).write_calls == 0


def test_with_an_external_id_the_parent_is_upserted_by_its_workflow_key(sandbox_org) -> None:
    for cid, people in (("auto1", AUDIENCE[:3]), ("auto2", AUDIENCE[3:6])):
        report = sandbox_org.sync(statuses_for(people, cid), KEYED, report_frame=automation_report(cid))
        assert report.failures.empty, report.failures.to_dict("records")
    campaigns = _campaigns(sandbox_org.org)
    parent = campaigns["Welcome series"]
    assert parent["Mailchimp_Campaign_Id__c"] == f"mailchimp-workflow-{WORKFLOW}"
    assert {campaigns[f"Welcome email {cid}"].get("ParentId") for cid in ("auto1", "auto2")} == {parent["Id"]}


def test_a_campaign_outside_the_hierarchy_keeps_the_parent_a_user_gave_it(sandbox_org) -> None:
    statuses = statuses_for(AUDIENCE[:3], "reg1")
    sandbox_org.sync(statuses, report_frame=campaign_report("reg1", title="News"))
    sf = sandbox_org.org.client()
    programme = sf.Campaign.create({"Name": "Programme 2026"})["id"]
    news = _campaigns(sandbox_org.org)["News"]
    sf.Campaign.update(news["Id"], {"ParentId": programme})
    later = statuses.assign(latest_status="Clicked", total_clicks=1, unique_clicks=1)
    report = sandbox_org.sync(later, report_frame=campaign_report("reg1", title="News (updated)"))
    assert report.outcomes["campaign"].updated == 1
    updated = _campaigns(sandbox_org.org)["News (updated)"]
    assert updated.get("ParentId") == sf.Campaign.get(programme)["Id"]


def test_automation_emails_get_their_workflow_from_mailchimp_over_http(tmp_path) -> None:
    account = SandboxAccount(seed=11, n_members=600, state_path=tmp_path / "mailchimp_state.json")
    with MailchimpSandbox(account, faults=MailchimpFaults(seed=3)) as served:
        _check_workflows(resource_on(served))


def _check_workflows(mailchimp) -> None:
    sent = mailchimp.list_sent_campaigns()
    automation = [c for c in sent if c.automation_id]
    regular = [c for c in sent if not c.automation_id]
    assert automation and regular
    reports = pd.concat(
        [parse_campaign_report(mailchimp.fetch_report(c.id)) for c in (automation[0], regular[0])], ignore_index=True
    )
    found = with_automation_workflows(reports, mailchimp)
    assert found["automation_id"].tolist()[0] == automation[0].automation_id
    assert found["automation_title"].tolist()[0] == "Welcome series"
    assert pd.isna(found["automation_id"].tolist()[1])


def _rss_reports(tmp_path) -> tuple[str, dict[str, pd.DataFrame], pd.DataFrame]:
    """Over HTTP from the sandbox account: its RSS campaign's id, each RSS send's report (as the report asset makes
    it) and one regular campaign's report."""
    account = SandboxAccount(
        seed=11, n_members=600, every_campaign_type=True, state_path=tmp_path / "mailchimp_state.json"
    )
    with MailchimpSandbox(account, faults=MailchimpFaults(seed=3)) as served:
        mailchimp = resource_on(served)
        sent = mailchimp.list_sent_campaigns()
        sends = [c for c in sent if c.type == "rss"]
        assert len(sends) == 2 and {c.parent_campaign_id for c in sends} == {account.rss_campaign_id}
        regular = next(c for c in sent if c.type == "regular")

        def report(campaign_id: str) -> pd.DataFrame:
            parsed = parse_campaign_report(mailchimp.fetch_report(campaign_id))
            return with_rss_campaigns(with_automation_workflows(parsed, mailchimp), mailchimp)

        return account.rss_campaign_id, {c.id: report(c.id) for c in sends}, report(regular.id)


def test_the_sends_of_one_rss_campaign_share_one_parent_keyed_by_the_rss_campaign(sandbox_org, tmp_path) -> None:
    rss_id, sends, regular = _rss_reports(tmp_path)
    for report in sends.values():
        assert report["rss_campaign_id"].tolist() == [rss_id]
        assert report["rss_campaign_title"].tolist() == ["Blog digest"]
    assert pd.isna(regular["rss_campaign_id"].iloc[0])
    profile = with_hierarchy(regular_parent="Newsletters")
    people = {send: AUDIENCE[4 * n : 4 * n + 4] for n, send in enumerate(sends)}
    regular_id = str(regular["campaign_id"].iloc[0])
    # Each send is its own partition, synced in a run of its own; a regular campaign runs beside them.
    outcomes = []
    for send, report in sends.items():
        run = sandbox_org.sync(statuses_for(people[send], send), profile, report_frame=report)
        assert run.failures.empty, run.failures.to_dict("records")
        outcomes.append(run.outcomes["parent_campaign"])
    assert [(o.created, o.unchanged) for o in outcomes] == [(1, 0), (0, 1)]
    assert sandbox_org.sync(statuses_for(AUDIENCE[8:10], regular_id), profile, report_frame=regular).failures.empty

    by_id = {c["Id"]: c for c in sandbox_org.org.records("Campaign")}
    parent = next(c for c in by_id.values() if c["Name"] == "Blog digest")
    key = f"mailchimp-rss-{rss_id}"
    assert key in parent["Description"] and parent.get("ParentId") is None
    children = {c["Name"]: c.get("ParentId") for c in by_id.values() if c.get("ParentId") == parent["Id"]}
    assert sorted(children) == sorted(str(r["campaign_title"].iloc[0]) for r in sends.values())
    # The RSS parent is a hierarchy of its own beside the regular parent: each send counts once, in one hierarchy.
    newsletters = next(c for c in by_id.values() if c["Name"] == "Newsletters")
    assert [c["Name"] for c in by_id.values() if c.get("ParentId") == newsletters["Id"]] == [
        str(regular["campaign_title"].iloc[0])
    ]
    ledger = sandbox_org.ledger.load_keys("parent_campaign", [key])
    assert ledger["salesforce_id"].tolist() == [parent["Id"]]

    # A rerun of either send is a no-op, and the parent's key does not move.
    for send, report in sends.items():
        assert sandbox_org.sync(statuses_for(people[send], send), profile, report_frame=report).write_calls == 0
    assert sandbox_org.ledger.load_keys("parent_campaign", [key])["salesforce_id"].tolist() == [parent["Id"]]


def test_rss_parents_off_puts_rss_sends_with_the_other_campaigns() -> None:
    report = pd.concat(
        [
            campaign_report("send1", campaign_type="rss").assign(rss_campaign_id="f00dfeed01"),
            campaign_report("reg1"),
            automation_report("auto1"),
        ],
        ignore_index=True,
    )
    common = {"automation_parents": True, "regular_parent_name": "Newsletters"}
    assert campaign_parent_keys(report, rss_parents=True, **common).tolist() == [
        "mailchimp-rss-f00dfeed01",
        "mailchimp-regular-campaigns",
        f"mailchimp-workflow-{WORKFLOW}",
    ]
    assert campaign_parent_keys(report, rss_parents=False, **common).tolist()[0] == "mailchimp-regular-campaigns"
    assert SyncProfile().campaign_hierarchy.rss_parents is True
