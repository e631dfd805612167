"""Campaign hierarchy: parent Campaigns for an automation's emails, an RSS campaign's sends (and, optionally, all
regular campaigns).

Salesforce rolls a child Campaign's statistics up to its parent (``ParentId``). The parent of an automation
email is keyed by its Mailchimp workflow id, the parent of an RSS campaign's sends by the RSS campaign's id, the
parent of regular campaigns by a fixed key, so a parent is created once however many runs and partitions name it,
and renaming it in the profile updates it in place. Every send has at most one parent and every parent is a
top-level Campaign with no members of its own, so each send counts exactly once in exactly one hierarchy: an
automation workflow's, an RSS campaign's, or the regular parent's.
"""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.campaign_types import canonical_campaign_type, is_automation_type
from campaign_pipeline.core.salesforce_records import _with_meta, enforce_field_limits

# Ledger kind of parent Campaigns (a kind of its own: its keys are workflows, not Mailchimp campaigns).
PARENT_CAMPAIGN = "parent_campaign"
WORKFLOW_KEY_PREFIX = "mailchimp-workflow-"
REGULAR_PARENT_KEY = "mailchimp-regular-campaigns"
RSS_KEY_PREFIX = "mailchimp-rss-"


def _column(campaign_report: pd.DataFrame, name: str) -> pd.Series:
    if name in campaign_report.columns:
        return campaign_report[name]
    return pd.Series(pd.NA, index=campaign_report.index, dtype=object)


def campaign_parent_keys(
    campaign_report: pd.DataFrame,
    *,
    automation_parents: bool,
    regular_parent_name: str | None,
    rss_parents: bool = False,
) -> pd.Series:
    """Per report row (same index): the sync key of the campaign's parent Campaign, or NA when it has none.

    Automation emails go under their workflow's parent (when the report knows the workflow), the sends of an RSS
    campaign under that RSS campaign's parent (with ``rss_parents``, when the report knows the RSS campaign);
    every other type (regular, plain-text, A/B split, multivariate, RSS sends without their own parent, types
    Mailchimp adds) under the regular parent.
    """
    types = campaign_report["campaign_type"].map(canonical_campaign_type)
    automation = types.map(is_automation_type).astype(bool)
    workflow = _column(campaign_report, "automation_id")
    rss_campaign = _column(campaign_report, "rss_campaign_id")
    keys = pd.Series(pd.NA, index=campaign_report.index, dtype=object)
    if automation_parents:
        known = automation & workflow.notna()
        keys[known] = WORKFLOW_KEY_PREFIX + workflow[known].astype(str)
    rss = (types == "rss") & rss_campaign.notna() if rss_parents else pd.Series(False, index=keys.index)
    if regular_parent_name:
        keys[~automation & ~rss] = REGULAR_PARENT_KEY
    keys[rss] = RSS_KEY_PREFIX + rss_campaign[rss].astype(str)
    return keys


def desired_parent_campaigns(
    campaign_report: pd.DataFrame,
    *,
    automation_parents: bool,
    regular_parent_name: str | None,
    rss_parents: bool = False,
    key_field: str | None = None,
    field_limit_policy: str = "truncate",
) -> pd.DataFrame:
    """One parent Campaign per parent key the report's campaigns need (see ``campaign_parent_keys``).

    Its Description names the key, so a lookup after a lost answer adopts only this parent, never a same-named
    Campaign of someone else; with an external-ID field the key is written there and the parent is upserted.
    """
    keys = campaign_parent_keys(
        campaign_report,
        automation_parents=automation_parents,
        regular_parent_name=regular_parent_name,
        rss_parents=rss_parents,
    )
    titles = _column(campaign_report, "automation_title")
    rss_titles = _column(campaign_report, "rss_campaign_title")
    rows = []
    for key in sorted(keys.dropna().unique()):
        if key == REGULAR_PARENT_KEY:
            name = str(regular_parent_name)
            description = f"Mailchimp regular campaigns: each synced campaign is a child Campaign. Sync key {key}."
        elif key.startswith(RSS_KEY_PREFIX):
            rss_id = key.removeprefix(RSS_KEY_PREFIX)
            title = rss_titles[keys == key].dropna()
            name = str(title.iloc[0]) if len(title) else f"Mailchimp RSS campaign {rss_id}"
            description = f"Mailchimp RSS campaign {rss_id}: each of its sends is a child Campaign. Sync key {key}."
        else:
            workflow = key.removeprefix(WORKFLOW_KEY_PREFIX)
            title = titles[keys == key].dropna()
            name = str(title.iloc[0]) if len(title) else f"Mailchimp automation {workflow}"
            description = (
                f"Mailchimp automation workflow {workflow}: each of its emails is a child Campaign (send times of "
                f"automation emails are approximate). Sync key {key}."
            )
        # The first campaign naming the parent holds its row (frames are stored per campaign partition); the
        # engine reads the ledger of parents by key, so whichever campaign wrote it last does not matter.
        first_campaign = str(campaign_report.loc[keys == key, "campaign_id"].min())
        rows.append({"sync_key": key, "campaign_id": first_campaign, "Name": name, "Description": description})
    frame = pd.DataFrame(rows, columns=["sync_key", "campaign_id", "Name", "Description"]).astype(object)
    desired = frame.assign(Type="Email", Status="In Progress", IsActive=True)
    desired = desired[["sync_key", "campaign_id", "Name", "Type", "Status", "IsActive", "Description"]]
    if key_field:
        desired[key_field] = desired["sync_key"]
    return enforce_field_limits(_with_meta(desired), "Campaign", policy=field_limit_policy)
