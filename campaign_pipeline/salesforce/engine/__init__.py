"""The sync engine: writes desired-record frames to Salesforce idempotently, incrementally and frugally.

Entry point: ``sync_desired_records(client, ledger, desired, settings)`` (``run``).

``desired`` is an ordered list of ``DesiredRecords(kind, frame)``; parents come before children (Campaign, then
its CampaignMemberStatus values, then CampaignMembers; Tasks, Notes, Attachments after them). A frame has the
shape described in ``campaign_pipeline.core.salesforce_records`` (meta columns + Salesforce field columns). A
``RecordKind`` (``kinds``) says which sObject a frame is, which field takes the parent's Salesforce Id, which
fields can only be set on create, which fields find an existing record (crash recovery, DUPLICATE_VALUE), and
which external-ID field, if any, makes creates upserts. The engine knows record kinds, never sync modes.

For every kind the engine:

1. checks each field column against the org's describe (before any write; a missing field is an error naming
   it) and shortens text to the org's field lengths (``context.OrgFields``);
2. fills the parent reference from the ledger, diffs against the ledger (``core.diff``) and sends only new
   keys, changed hashes and keys whose last write failed, so a run with nothing new makes zero write calls;
3. looks up records whose earlier create has an unknown outcome (ledger ``pending``) instead of creating twice
   (``lookups``): IN-list queries on the kind's lookup fields, chunked under the URI limit
   (``salesforce.soql``), then an exact match in Python (also on ``match_in_python`` fields, long text a live
   org cannot filter on); a kind with a ``sequence_field`` (CampaignMemberStatus.SortOrder, unique per Campaign)
   numbers its remaining creates after the parent's existing records (``lookups.number_new_records``);
4. sends through sObject Collections (``sobject_collections``: 200 records and at most
   ``COLLECTION_MAX_BODY_BYTES`` a call; a bigger record alone through the sObject resource) below
   ``settings.bulk_threshold`` records and Bulk API 2.0 ingest jobs (``bulk``) at or above it (never for kinds
   with ``bulk_allowed=False``: Attachments), recording intent before and outcomes after every batch; values
   go on the wire through ``encoding``;
   Kinds with ``versioned=True`` (Files: ContentVersion) take ``file_versions`` instead: the ledger holds the
   document's Id and a changed record is the document's next version, never an update in place;
5. records per-record failures with Salesforce's code and message (``report.Bookkeeping``), retries lock errors
   within the run and leaves every other failure for the next run, never stopping the other records.

Kinds with ``updates_existing`` (opt-out sync) name an existing record by the frame's ``Id`` column: what the ledger
lacks is sent as an update, never a create, so there is nothing to look up and a lost answer is simply re-sent.

An exhausted API-call budget, the org's quota nearing its end or REQUEST_LIMIT_EXCEEDED stop the run cleanly:
the report says so and everything written so far is in the ledger.
"""

from campaign_pipeline.salesforce.engine.bulk import BULK_JOB_WRITE_CALLS
from campaign_pipeline.salesforce.engine.context import SalesforceFieldError
from campaign_pipeline.salesforce.engine.kinds import (
    ACCOUNT_OPT_OUT_KIND,
    ATTACHMENT_KIND,
    CAMPAIGN_KIND,
    CAMPAIGN_MEMBER_KIND,
    CAMPAIGN_MEMBER_STATUS_KIND,
    CONTACT_OPT_OUT_KIND,
    CONTENT_NOTE_KIND,
    CONTENT_NOTE_LINK_KIND,
    EMAIL_FILE_KIND,
    LEAD_KIND,
    LEAD_OPT_OUT_KIND,
    NOTE_KIND,
    TASK_KIND,
    TASK_ON_CAMPAIGN_KIND,
    DesiredRecords,
    RecordKind,
    with_external_id,
)
from campaign_pipeline.salesforce.engine.report import FAILURE_COLUMNS, KindOutcome, SyncReport
from campaign_pipeline.salesforce.engine.run import sync_desired_records
from campaign_pipeline.salesforce.engine.sobject_collections import COLLECTION_SIZE

__all__ = [
    "ACCOUNT_OPT_OUT_KIND",
    "ATTACHMENT_KIND",
    "BULK_JOB_WRITE_CALLS",
    "CAMPAIGN_KIND",
    "CAMPAIGN_MEMBER_KIND",
    "CAMPAIGN_MEMBER_STATUS_KIND",
    "CONTACT_OPT_OUT_KIND",
    "COLLECTION_SIZE",
    "CONTENT_NOTE_KIND",
    "CONTENT_NOTE_LINK_KIND",
    "EMAIL_FILE_KIND",
    "FAILURE_COLUMNS",
    "LEAD_KIND",
    "LEAD_OPT_OUT_KIND",
    "NOTE_KIND",
    "TASK_KIND",
    "TASK_ON_CAMPAIGN_KIND",
    "DesiredRecords",
    "KindOutcome",
    "RecordKind",
    "SalesforceFieldError",
    "SyncReport",
    "sync_desired_records",
    "with_external_id",
]
