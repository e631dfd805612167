"""Record kinds: what the engine must know about one kind of Salesforce record to write it safely."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from campaign_pipeline.core.activity_records import ATTACHMENT, NOTE, TASK
from campaign_pipeline.core.campaign_hierarchy import PARENT_CAMPAIGN
from campaign_pipeline.core.content_records import CONTENT_NOTE, CONTENT_NOTE_LINK, EMAIL_FILE
from campaign_pipeline.core.opt_out_records import ACCOUNT_OPT_OUT, CONTACT_OPT_OUT, LEAD_OPT_OUT
from campaign_pipeline.core.salesforce_records import CAMPAIGN, CAMPAIGN_MEMBER, CAMPAIGN_MEMBER_STATUS


@dataclass(frozen=True)
class RecordKind:
    """Which sObject a frame is, how it hangs on its parent, and how an existing record is found again."""

    name: str
    sobject: str
    parent_field: str | None = None
    parent_kind: str | None = None
    create_only_fields: tuple[str, ...] = ()
    lookup_fields: tuple[str, ...] = ()
    external_id_field: str | None = None
    # Look every create up first: for records the org may have made itself (default CampaignMemberStatus values).
    lookup_before_create: bool = False
    # A text field holding the sync key (Campaign.Description names the Mailchimp campaign): a lookup adopts only
    # records whose field contains the key, so a same-named record of someone else is never taken over.
    lookup_key_marker_field: str | None = None
    # Fields that identify a record too but cannot go in a SOQL WHERE (long text areas such as Task.Description:
    # a live org answers INVALID_FIELD "can not be filtered"): selected by the lookup and compared in Python.
    match_in_python: tuple[str, ...] = ()
    # A number the org requires unique among a parent's records (CampaignMemberStatus.SortOrder): creates take the
    # next numbers after the parent's existing records, in the frame's order; it is never part of the desired
    # frame (so never hashed) and never rewritten (list it in create_only_fields too).
    sequence_field: str | None = None
    # Records the org already has (a matched person): the frame's Id column names the record, which is only ever
    # updated, never created or looked up. An update is idempotent, so a lost answer is simply sent again.
    updates_existing: bool = False
    # Records several Mailchimp campaigns share (a parent Campaign): the ledger is read by their keys, not by the
    # campaigns of the run, since the campaign a row was last written for may be another partition's.
    shared_across_campaigns: bool = False
    # False for objects Bulk API 2.0 cannot load (its CSV has no way to carry blob fields such as Attachment.Body):
    # they always go through sObject Collections, whatever the volume.
    bulk_allowed: bool = True
    # A lookup never adopts a record the ledger holds for another key: for kinds whose lookup fields do not tell
    # two keys' records apart (every ContentNote of a campaign has its title), an orphan left by a lost answer is
    # then adopted by exactly one key.
    lookup_skips_owned: bool = False
    # Files (ContentVersion): the ledger holds the ContentDocument's Id; a changed record is the document's next
    # version (a create naming ContentDocumentId), never an update; see ``file_versions``.
    versioned: bool = False
    # Records the org makes itself when their parent is created (a new Campaign's CampaignMemberStatus values),
    # as (field, value) pairs: a dry run counts ours of that identity as adopted from them, never created.
    org_made_with_parent: tuple[tuple[tuple[str, object], ...], ...] = ()

    @property
    def identity_fields(self) -> tuple[str, ...]:
        """Every field that identifies a record: the SOQL-filtered lookup fields, then those matched in Python."""
        return (*self.lookup_fields, *self.match_in_python)


@dataclass
class DesiredRecords:
    """One kind's desired-record frame (shape: ``campaign_pipeline.core.salesforce_records``), in push order."""

    kind: RecordKind
    frame: pd.DataFrame


CAMPAIGN_KIND = RecordKind(CAMPAIGN, "Campaign", lookup_fields=("Name",), lookup_key_marker_field="Description")
# Campaign hierarchy: parent Campaigns (core.campaign_hierarchy), looked up before every create (by Name, adopted
# only when the Description names their key), and the Campaigns under them (ParentId from the parent's ledger row;
# a Campaign without a parent key leaves its ParentId as the org has it).
PARENT_CAMPAIGN_KIND = replace(
    CAMPAIGN_KIND, name=PARENT_CAMPAIGN, lookup_before_create=True, shared_across_campaigns=True
)
CAMPAIGN_IN_HIERARCHY_KIND = replace(CAMPAIGN_KIND, parent_field="ParentId", parent_kind=PARENT_CAMPAIGN)
CAMPAIGN_MEMBER_STATUS_KIND = RecordKind(
    CAMPAIGN_MEMBER_STATUS,
    "CampaignMemberStatus",
    parent_field="CampaignId",
    parent_kind=CAMPAIGN,
    create_only_fields=("CampaignId", "Label", "SortOrder"),
    lookup_fields=("CampaignId", "Label"),
    lookup_before_create=True,
    sequence_field="SortOrder",
    org_made_with_parent=(
        (("Label", "Sent"), ("HasResponded", False)),
        (("Label", "Responded"), ("HasResponded", True)),
    ),
)
CAMPAIGN_MEMBER_KIND = RecordKind(
    CAMPAIGN_MEMBER,
    "CampaignMember",
    parent_field="CampaignId",
    parent_kind=CAMPAIGN,
    create_only_fields=("CampaignId", "ContactId", "LeadId"),
    lookup_fields=("CampaignId", "ContactId", "LeadId"),
)
# Looked up by Email before creating, so a Lead made by an earlier (crashed) run is adopted, not doubled.
LEAD_KIND = RecordKind("lead", "Lead", lookup_fields=("Email",), lookup_before_create=True)

# Tasks: the event never changes, so lookups are by person and subject, and the description (it names the event)
# tells a person's Tasks of one subject apart. Description is a long text area, which SOQL cannot filter on: it is
# compared in Python. TaskSubtype is fixed at create.
TASK_KIND = RecordKind(
    TASK,
    "Task",
    create_only_fields=("TaskSubtype",),
    lookup_fields=("WhoId", "Subject"),
    match_in_python=("Description",),
)
# campaign_and_activity: WhatId takes the Campaign's Salesforce Id from the ledger (parent_key = campaign id).
TASK_ON_CAMPAIGN_KIND = replace(TASK_KIND, parent_field="WhatId", parent_kind=CAMPAIGN)
# One Note and one Attachment per campaign x person; the title / file name carry the campaign id, so they identify.
NOTE_KIND = RecordKind(NOTE, "Note", create_only_fields=("ParentId",), lookup_fields=("ParentId", "Title"))
# Bulk API 2.0 cannot load Attachment.Body (base64): Attachments always go through sObject Collections, cut by size.
ATTACHMENT_KIND = RecordKind(
    ATTACHMENT,
    "Attachment",
    create_only_fields=("ParentId",),
    lookup_fields=("ParentId", "Name"),
    bulk_allowed=False,
)

# Opt-out sync: HasOptedOutOfEmail = true on the matched person (core.opt_out_records), one kind per sObject.
CONTACT_OPT_OUT_KIND = RecordKind(CONTACT_OPT_OUT, "Contact", updates_existing=True)
LEAD_OPT_OUT_KIND = RecordKind(LEAD_OPT_OUT, "Lead", updates_existing=True)
# A person account's opt-out goes on the Account (PersonHasOptedOutOfEmail): its person contact is read-only.
ACCOUNT_OPT_OUT_KIND = RecordKind(ACCOUNT_OPT_OUT, "Account", updates_existing=True)

# Enhanced Notes and Files (mode notes, notes_format enhanced; core.content_records). Blob fields: no Bulk API.
CONTENT_NOTE_KIND = RecordKind(
    CONTENT_NOTE, "ContentNote", lookup_fields=("Title",), lookup_skips_owned=True, bulk_allowed=False
)
# The note's link to its person: ContentDocumentId is the note's Id from the ledger (parent_key = the note's key).
CONTENT_NOTE_LINK_KIND = RecordKind(
    CONTENT_NOTE_LINK,
    "ContentDocumentLink",
    parent_field="ContentDocumentId",
    parent_kind=CONTENT_NOTE,
    create_only_fields=("ContentDocumentId", "LinkedEntityId"),
    lookup_fields=("ContentDocumentId", "LinkedEntityId"),
)
# The email File: found again by its first version's person and title (the title carries the campaign id).
EMAIL_FILE_KIND = RecordKind(
    EMAIL_FILE,
    "ContentVersion",
    create_only_fields=("FirstPublishLocationId",),
    lookup_fields=("FirstPublishLocationId", "Title"),
    bulk_allowed=False,
    versioned=True,
)


def with_external_id(kind: RecordKind, external_id_field: str | None) -> RecordKind:
    """The kind keyed by an external-ID field: creates become upserts and lookups use the key."""
    if not external_id_field:
        return kind
    return replace(
        kind,
        external_id_field=external_id_field,
        lookup_fields=(external_id_field,),
        lookup_key_marker_field=None,
        match_in_python=(),
    )
