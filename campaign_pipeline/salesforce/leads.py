"""Leads for unmatched members (profile: matching.create_leads_for_unmatched), made by the push, never by matching.

``salesforce_matches`` only reads Salesforce; with the option on, the push (``salesforce_sync``) also reads
``unmatched_members`` and the frames its person-based desired assets read. It creates the Leads first (once,
through the ledger: a Lead is keyed by the member's email hash and looked up by Email before it is created), then
builds those members' records through the mode table, exactly as the ``sf_*`` assets build everyone else's, and
writes them with the rest.
"""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.salesforce_records import desired_leads
from campaign_pipeline.modes import DESIRED_ASSETS, Frames, build_desired_frame, desired_asset_names, mode_spec
from campaign_pipeline.profile import SyncProfile, SyncSettings
from campaign_pipeline.salesforce.engine import LEAD_KIND, DesiredRecords, SyncReport, sync_desired_records
from campaign_pipeline.salesforce.ledger import SyncLedger
from campaign_pipeline.salesforce.matching import MATCH_COLUMNS
from campaign_pipeline.salesforce.resource import SalesforceClient

NEW_LEAD_NOTE = "Lead created for an unmatched member"
# A preview's stand-in for the Id of a Lead it would create (never sent anywhere: a preview writes nothing).
PREVIEW_LEAD_PREFIX = "new Lead for "


def creates_leads(profile: SyncProfile) -> bool:
    return mode_spec(profile).matches_people and profile.matching.create_leads_for_unmatched


def lead_inputs(profile: SyncProfile) -> tuple[str, ...]:
    """What the push reads besides its desired-record assets when it creates Leads (nothing when it does not)."""
    if not creates_leads(profile):
        return ()
    upstream = [
        name
        for asset in desired_asset_names(profile)
        if "salesforce_matches" in DESIRED_ASSETS[asset].inputs
        for name in DESIRED_ASSETS[asset].inputs
        if name != "salesforce_matches"
    ]
    return tuple(dict.fromkeys(["unmatched_members", *upstream]))


def create_leads_for_unmatched(
    client: SalesforceClient,
    ledger: SyncLedger,
    profile: SyncProfile,
    unmatched: pd.DataFrame,
    settings: SyncSettings | None = None,
) -> tuple[SyncReport, pd.DataFrame]:
    """Create a Lead per unmatched address (once, through the ledger); (the run's report, matches to those Leads).

    ``settings`` default to the profile's. In preview nothing is created: a member whose Lead the real run would
    make is matched to a stand-in Id (``PREVIEW_LEAD_PREFIX``), so its records are counted as the run would create
    them.
    """
    settings = settings or profile.sync
    leads = desired_leads(
        unmatched, company=profile.matching.lead_company_default, lead_source=profile.matching.lead_source
    )
    report = sync_desired_records(client, ledger, [DesiredRecords(LEAD_KIND, leads)], settings)
    known = ledger.load(LEAD_KIND.name).dropna(subset=["salesforce_id"]).set_index("sync_key")["salesforce_id"]
    keys = "lead|" + unmatched["email_id"]
    lead_ids = keys.map(known)
    if settings.preview_only:
        failing = (
            set(report.changes.loc[report.changes["action"] == "fail", "sync_key"]) if len(report.changes) else set()
        )
        coming = lead_ids.isna() & keys.isin(set(leads["sync_key"])) & ~keys.isin(failing)
        lead_ids = lead_ids.where(~coming, PREVIEW_LEAD_PREFIX + unmatched["email_id"])
    now_matched = unmatched[lead_ids.notna()].assign(
        salesforce_id=lead_ids[lead_ids.notna()],
        salesforce_object="Lead",
        candidate_count=1,
        match_note=NEW_LEAD_NOTE,
        person_account_id=None,
    )
    return report, now_matched[list(MATCH_COLUMNS)].reset_index(drop=True)


def with_new_leads(
    profile: SyncProfile, desired_frames: Frames, upstream: Frames, new_matches: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The desired frames plus the records of members matched to new Leads, built as the ``sf_*`` assets build."""
    frames = dict(desired_frames)
    if new_matches.empty:
        return frames
    for name in frames:
        if "salesforce_matches" not in DESIRED_ASSETS[name].inputs:
            continue
        extra = build_desired_frame(profile, name, {**upstream, "salesforce_matches": new_matches})
        frames[name] = pd.concat([frames[name], extra], ignore_index=True) if len(frames[name]) else extra
    return frames
