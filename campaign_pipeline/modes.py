"""Sync modes as data: what each mode needs, which record kinds it writes in which order, and the one way to build them.

``MODES`` holds one ``ModeSpec`` per mode (the names come from the ``SyncMode`` literal, which the profile uses too):
whether it needs the sent email's content from Mailchimp, whether it matches members to Salesforce people, and the
``RecordStep``s the push writes, parents first. Each step names the desired-record asset whose frame it writes
(``DESIRED_ASSETS``: upstream inputs and the builder of the frame) and the record kind it writes it as.

Every caller builds desired records the same way: the ``sf_*`` assets call ``build_desired_frame``, the push
(``salesforce_sync``) calls ``push_records`` on their frames, and tests and benches call ``desired_records``,
which is those two composed. The sync engine only ever sees record kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import pandas as pd

from campaign_pipeline.core.activity_records import (
    TASK_SUBTYPE,
    desired_attachments,
    desired_notes,
    desired_tasks,
)
from campaign_pipeline.core.campaign_hierarchy import campaign_parent_keys, desired_parent_campaigns
from campaign_pipeline.core.content_records import (
    desired_content_notes,
    desired_email_files,
    desired_note_links,
)
from campaign_pipeline.core.opt_out_records import desired_opt_outs, opt_outs_of
from campaign_pipeline.core.salesforce_records import (
    desired_campaign_member_statuses,
    desired_campaign_members,
    desired_campaigns,
)
from campaign_pipeline.salesforce.engine.kinds import (
    ACCOUNT_OPT_OUT_KIND,
    ATTACHMENT_KIND,
    CAMPAIGN_IN_HIERARCHY_KIND,
    CAMPAIGN_KIND,
    CAMPAIGN_MEMBER_KIND,
    CAMPAIGN_MEMBER_STATUS_KIND,
    CONTACT_OPT_OUT_KIND,
    CONTENT_NOTE_KIND,
    CONTENT_NOTE_LINK_KIND,
    EMAIL_FILE_KIND,
    LEAD_OPT_OUT_KIND,
    NOTE_KIND,
    PARENT_CAMPAIGN_KIND,
    TASK_KIND,
    TASK_ON_CAMPAIGN_KIND,
    DesiredRecords,
    RecordKind,
    with_external_id,
)

if TYPE_CHECKING:  # profile.py imports SyncMode from here
    from campaign_pipeline.profile import SyncProfile

SyncMode = Literal["campaign", "activity", "campaign_and_activity", "notes", "campaign_totals"]
SYNC_MODES: tuple[SyncMode, ...] = get_args(SyncMode)

# Upstream frames by asset name: raw_email_events, member_statuses, campaign_totals, mailchimp_campaign_report,
# salesforce_matches, campaign_content.
Frames = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class DesiredAsset:
    """A desired-record asset (``sf_*``): the upstream assets it reads and how its frame is built from them."""

    name: str
    inputs: tuple[str, ...]
    build: Callable[[SyncProfile, Frames], pd.DataFrame]


@dataclass(frozen=True)
class RecordStep:
    """One record kind the push writes: the desired asset its frame comes from, and the kind per profile.

    ``derive`` turns the asset's frame into this step's records when they are not the frame itself (the
    CampaignMemberStatus values of the Campaigns). ``applies`` leaves the step out for profiles it does not
    concern (the links of Enhanced Notes, under classic notes). ``only_with_rows`` leaves it out of a push with
    no such records: for fields only some orgs have (a person account's opt-out flag, which an org without
    Person Accounts lacks, so checking the field there would fail the push).
    """

    asset: str
    kind: Callable[[SyncProfile], RecordKind]
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    applies: Callable[[SyncProfile], bool] | None = None
    only_with_rows: bool = False


@dataclass(frozen=True)
class ModeSpec:
    """What one sync mode needs and writes."""

    name: SyncMode
    summary: str
    needs_content: bool
    matches_people: bool
    records: tuple[RecordStep, ...]
    # Tasks point at the mode's Campaign (Task.WhatId).
    tasks_on_campaign: bool = False

    @property
    def desired_assets(self) -> tuple[str, ...]:
        """The desired-record assets the push reads, in push order."""
        return tuple(dict.fromkeys(step.asset for step in self.records))


# -- record kinds per profile ------------------------------------------------------------------------------------
def campaign_kind(profile: SyncProfile) -> RecordKind:
    """Campaign records (under their parent when the profile has a hierarchy), upserted by the profile's Campaign
    external-ID field when it has one."""
    base = CAMPAIGN_IN_HIERARCHY_KIND if profile.campaign_hierarchy.enabled else CAMPAIGN_KIND
    return with_external_id(base, profile.field_mapping.campaign_key_field)


def parent_campaign_kind(profile: SyncProfile) -> RecordKind:
    """Parent Campaigns, keyed like Campaigns (the external-ID field then holds the parent's key)."""
    return with_external_id(PARENT_CAMPAIGN_KIND, profile.field_mapping.campaign_key_field)


def campaign_member_kind(profile: SyncProfile) -> RecordKind:
    """CampaignMember records, upserted by the profile's CampaignMember external-ID field when it has one."""
    return with_external_id(CAMPAIGN_MEMBER_KIND, profile.field_mapping.campaign_member_key_field)


def campaign_member_status_kind(profile: SyncProfile) -> RecordKind:
    return CAMPAIGN_MEMBER_STATUS_KIND


def task_kind(profile: SyncProfile) -> RecordKind:
    """Tasks, linked to the Campaign (WhatId) in modes that write one, upserted by the Task key field if set."""
    base = TASK_ON_CAMPAIGN_KIND if mode_spec(profile).tasks_on_campaign else TASK_KIND
    return with_external_id(base, profile.field_mapping.task_key_field)


def note_kind(profile: SyncProfile) -> RecordKind:
    """Enhanced Notes (ContentNote) by default, classic Notes when the profile says so."""
    return CONTENT_NOTE_KIND if enhanced_notes(profile) else NOTE_KIND


def note_link_kind(profile: SyncProfile) -> RecordKind:
    return CONTENT_NOTE_LINK_KIND


def attachment_kind(profile: SyncProfile) -> RecordKind:
    """The sent email as a File (ContentVersion) with Enhanced Notes, else as a classic Attachment."""
    return EMAIL_FILE_KIND if enhanced_notes(profile) else ATTACHMENT_KIND


# -- profile options the builders read -----------------------------------------------------------------------------
def task_subtype(profile: SyncProfile) -> str | None:
    """Task.TaskSubtype to set: the profile's, Email when unset, none when set empty (orgs without the field)."""
    subtype = profile.activity.task_subtype
    if subtype is None:
        return TASK_SUBTYPE
    return subtype or None


def attachments_enabled(profile: SyncProfile) -> bool:
    return profile.activity.attach_sent_email


def enhanced_notes(profile: SyncProfile) -> bool:
    """Mode notes writes Enhanced Notes and Files (Lightning Experience), not classic Notes and Attachments."""
    return profile.activity.notes_format == "enhanced"


# -- desired-record frames -------------------------------------------------------------------------------------------
def _sf_campaign(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    report = frames["mailchimp_campaign_report"]
    desired = desired_campaigns(
        frames["campaign_totals"],
        report,
        totals_mapping=profile.field_mapping.campaign,
        key_field=profile.field_mapping.campaign_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )
    hierarchy = profile.campaign_hierarchy
    if hierarchy.enabled:
        parents = campaign_parent_keys(
            report,
            automation_parents=hierarchy.automation_parents,
            regular_parent_name=hierarchy.regular_parent,
            rss_parents=hierarchy.rss_parents,
        )
        by_campaign = dict(zip(report["campaign_id"], parents, strict=True))
        desired["parent_key"] = desired["campaign_id"].map(by_campaign).astype(object)
    return desired


def _sf_parent_campaigns(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    hierarchy = profile.campaign_hierarchy
    return desired_parent_campaigns(
        frames["mailchimp_campaign_report"],
        automation_parents=hierarchy.automation_parents,
        regular_parent_name=hierarchy.regular_parent,
        rss_parents=hierarchy.rss_parents,
        key_field=profile.field_mapping.campaign_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )


def _sf_campaign_members(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    return desired_campaign_members(
        frames["member_statuses"],
        frames["salesforce_matches"],
        member_mapping=profile.field_mapping.campaign_member,
        key_field=profile.field_mapping.campaign_member_key_field,
        field_limit_policy=profile.sync.field_limit_policy,
    )


def _sf_tasks(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    mapping = profile.field_mapping
    return desired_tasks(
        frames["raw_email_events"],
        frames["member_statuses"],
        frames["salesforce_matches"],
        frames["mailchimp_campaign_report"],
        status_field=mapping.task_status_field,
        url_field=mapping.task_url_field,
        key_field=mapping.task_key_field,
        one_task_per_url=profile.activity.one_task_per_url,
        link_campaign=mode_spec(profile).tasks_on_campaign,
        task_subtype=task_subtype(profile),
        field_limit_policy=profile.sync.field_limit_policy,
    )


def _sf_notes(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    build = desired_content_notes if enhanced_notes(profile) else desired_notes
    return build(
        frames["member_statuses"],
        frames["raw_email_events"],
        frames["salesforce_matches"],
        frames["mailchimp_campaign_report"],
        field_limit_policy=profile.sync.field_limit_policy,
    )


def _sf_attachments(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    """The sent email on each person (a File or an Attachment), or no rows when the profile turns it off."""
    build = desired_email_files if enhanced_notes(profile) else desired_attachments
    desired = build(
        frames["campaign_content"],
        frames["member_statuses"],
        frames["salesforce_matches"],
        frames["mailchimp_campaign_report"],
    )
    return desired if attachments_enabled(profile) else desired.iloc[0:0]


def _sf_opt_outs(profile: SyncProfile, frames: Frames) -> pd.DataFrame:
    return desired_opt_outs(frames["member_statuses"], frames["salesforce_matches"])


_PEOPLE_INPUTS = ("member_statuses", "salesforce_matches")
DESIRED_ASSETS: dict[str, DesiredAsset] = {
    asset.name: asset
    for asset in (
        DesiredAsset("sf_campaign", ("campaign_totals", "mailchimp_campaign_report"), _sf_campaign),
        DesiredAsset("sf_campaign_members", _PEOPLE_INPUTS, _sf_campaign_members),
        DesiredAsset("sf_tasks", ("raw_email_events", *_PEOPLE_INPUTS, "mailchimp_campaign_report"), _sf_tasks),
        DesiredAsset(
            "sf_notes",
            ("member_statuses", "raw_email_events", "salesforce_matches", "mailchimp_campaign_report"),
            _sf_notes,
        ),
        DesiredAsset(
            "sf_attachments", ("campaign_content", *_PEOPLE_INPUTS, "mailchimp_campaign_report"), _sf_attachments
        ),
        DesiredAsset("sf_opt_outs", _PEOPLE_INPUTS, _sf_opt_outs),
        DesiredAsset("sf_parent_campaigns", ("mailchimp_campaign_report",), _sf_parent_campaigns),
    )
}


def _statuses_of_campaigns(campaigns: pd.DataFrame) -> pd.DataFrame:
    return desired_campaign_member_statuses(campaigns["campaign_id"])


_CAMPAIGN = RecordStep("sf_campaign", campaign_kind)
# Salesforce rejects a member whose status the Campaign lacks: the statuses go between Campaigns and members.
_MEMBER_STATUSES = RecordStep("sf_campaign", campaign_member_status_kind, _statuses_of_campaigns)
_MEMBERS = RecordStep("sf_campaign_members", campaign_member_kind)
_TASKS = RecordStep("sf_tasks", task_kind)

# Campaign hierarchy (profile: campaign_hierarchy): parents before the Campaigns under them.
_PARENT_CAMPAIGNS = RecordStep("sf_parent_campaigns", parent_campaign_kind)
# Opt-out sync (profile: matching.sync_opt_out), after the mode's own records, in any mode that matches people.
_OPT_OUTS = (
    RecordStep("sf_opt_outs", lambda profile: CONTACT_OPT_OUT_KIND, lambda frame: opt_outs_of(frame, "Contact")),
    RecordStep("sf_opt_outs", lambda profile: LEAD_OPT_OUT_KIND, lambda frame: opt_outs_of(frame, "Lead")),
    RecordStep(
        "sf_opt_outs",
        lambda profile: ACCOUNT_OPT_OUT_KIND,
        lambda frame: opt_outs_of(frame, "Account"),
        only_with_rows=True,
    ),
)

MODES: dict[str, ModeSpec] = {
    spec.name: spec
    for spec in (
        ModeSpec(
            "campaign",
            "a Campaign per Mailchimp campaign and a CampaignMember per matched Lead/Contact",
            needs_content=False,
            matches_people=True,
            records=(_CAMPAIGN, _MEMBER_STATUSES, _MEMBERS),
        ),
        ModeSpec(
            "activity",
            "a Task per open and per click on the Lead/Contact",
            needs_content=False,
            matches_people=True,
            records=(_TASKS,),
        ),
        ModeSpec(
            "campaign_and_activity",
            "both; each Task also points at the Campaign",
            needs_content=False,
            matches_people=True,
            records=(_CAMPAIGN, _MEMBER_STATUSES, _MEMBERS, _TASKS),
            tasks_on_campaign=True,
        ),
        ModeSpec(
            "notes",
            "a note per campaign on each matched Lead/Contact, and the sent email as a file: Enhanced Notes "
            "and Files (ContentNote linked by ContentDocumentLink, ContentVersion), or classic Note and Attachment",
            needs_content=True,
            matches_people=True,
            records=(
                RecordStep("sf_notes", note_kind),
                # The note must exist before its link: the link takes the note's Id (ContentDocumentId).
                RecordStep("sf_notes", note_link_kind, desired_note_links, applies=enhanced_notes),
                RecordStep("sf_attachments", attachment_kind),
            ),
        ),
        ModeSpec(
            "campaign_totals",
            "a Campaign carrying only the campaign's totals",
            needs_content=False,
            matches_people=False,
            records=(_CAMPAIGN,),
        ),
    )
}
assert set(MODES) == set(SYNC_MODES), "every SyncMode needs a ModeSpec"


def mode_spec(profile_or_mode: SyncProfile | str) -> ModeSpec:
    """The spec of a profile's mode (or of a mode name)."""
    name = profile_or_mode if isinstance(profile_or_mode, str) else profile_or_mode.mode
    return MODES[name]


def record_steps(profile: SyncProfile) -> tuple[RecordStep, ...]:
    """What the profile's push writes, in order: its mode's records, then the options the profile turns on."""
    spec = mode_spec(profile)
    steps = tuple(step for step in spec.records if step.applies is None or step.applies(profile))
    if _CAMPAIGN in steps and profile.campaign_hierarchy.enabled:
        steps = (_PARENT_CAMPAIGNS, *steps)
    if spec.matches_people and profile.matching.sync_opt_out:
        steps += _OPT_OUTS
    return steps


def desired_asset_names(profile: SyncProfile) -> tuple[str, ...]:
    """The desired-record assets the profile's push reads, in push order (its Definitions have exactly these)."""
    return tuple(dict.fromkeys(step.asset for step in record_steps(profile)))


def build_desired_frame(profile: SyncProfile, asset_name: str, frames: Frames) -> pd.DataFrame:
    """The frame of one desired-record asset from its upstream frames (what the ``sf_*`` asset outputs)."""
    asset = DESIRED_ASSETS[asset_name]
    missing = [name for name in asset.inputs if name not in frames]
    if missing:
        raise KeyError(f"{asset_name} needs the frames {list(asset.inputs)}; missing {missing}")
    return asset.build(profile, frames)


def push_records(profile: SyncProfile, desired_frames: Frames) -> list[DesiredRecords]:
    """What the push writes, in order, from the mode's desired-record frames (keyed by asset name)."""
    records = []
    for step in record_steps(profile):
        frame = desired_frames[step.asset]
        records_frame = step.derive(frame) if step.derive else frame
        if step.only_with_rows and records_frame.empty:
            continue
        records.append(DesiredRecords(step.kind(profile), records_frame))
    return records


def desired_records(profile: SyncProfile, frames: Frames) -> list[DesiredRecords]:
    """Everything the mode writes, from the upstream frames: the ``sf_*`` assets, then the push, in one call."""
    desired_frames = {name: build_desired_frame(profile, name, frames) for name in desired_asset_names(profile)}
    return push_records(profile, desired_frames)
