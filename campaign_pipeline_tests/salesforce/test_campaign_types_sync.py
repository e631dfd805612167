"""Every campaign type Mailchimp documents, fetched over HTTP and synced to the sandbox org: its type lands too."""

from __future__ import annotations

from campaign_pipeline.core.campaign_types import KNOWN_CAMPAIGN_TYPES, campaign_type_label
from campaign_pipeline.core.events import parse_campaign_report
from campaign_pipeline.mailchimp.assets import with_automation_workflows, with_rss_campaigns
from campaign_pipeline.sandbox.mailchimp_api import MailchimpFaults, MailchimpSandbox
from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount
from campaign_pipeline_tests.mailchimp.conftest import resource_on

from .conftest import AUDIENCE, statuses_for


def test_every_campaign_type_lands_in_salesforce_with_its_type_and_a_rerun_writes_nothing(sandbox_org, tmp_path):
    account = SandboxAccount(seed=5, n_members=500, every_campaign_type=True, state_path=tmp_path / "state.json")
    with MailchimpSandbox(account, faults=MailchimpFaults(seed=3)) as served:
        mailchimp = resource_on(served)
        by_type: dict[str, str] = {}
        for campaign in mailchimp.list_sent_campaigns():
            by_type.setdefault(campaign.type, campaign.id)
        assert set(by_type) == set(KNOWN_CAMPAIGN_TYPES)
        reports = {
            campaign_type: with_rss_campaigns(
                with_automation_workflows(parse_campaign_report(mailchimp.fetch_report(cid)), mailchimp), mailchimp
            )
            for campaign_type, cid in by_type.items()
        }
    for n, (campaign_type, report) in enumerate(sorted(reports.items())):
        cid = by_type[campaign_type]
        run = sandbox_org.sync(statuses_for(AUDIENCE[2 * n : 2 * n + 2], cid), report_frame=report)
        assert run.failures.empty, (campaign_type, run.failures.to_dict("records"))
    campaigns = [
        c for c in sandbox_org.org.records("Campaign") if "Sync key mailchimp-" not in (c["Description"] or "")
    ]
    by_id = {cid: c for c in campaigns for cid in by_type.values() if cid in c["Description"]}
    assert set(by_id) == set(by_type.values())
    for campaign_type, cid in by_type.items():
        campaign = by_id[cid]
        assert campaign["Type"] == "Email", campaign_type
        assert campaign["Description"].startswith(f"Mailchimp {campaign_type_label(campaign_type)} {cid}")
        assert ("approximate" in campaign["Description"]) == (campaign_type == "automation")
    for n, (campaign_type, report) in enumerate(sorted(reports.items())):
        cid = by_type[campaign_type]
        again = sandbox_org.sync(statuses_for(AUDIENCE[2 * n : 2 * n + 2], cid), report_frame=report)
        assert again.write_calls == 0, campaign_type
    assert reports["rss"]["rss_campaign_id"].notna().all()  # and each RSS send knows its RSS campaign
