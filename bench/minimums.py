"""Lower bounds on API calls from the APIs' documented limits, for the benches' min_* figures.

These are what any client would need, whatever its plan (not the calls our own code chose to make):

- Salesforce sObject Collections take at most 200 records a call; a Bulk API 2.0 ingest job takes three calls
  (create, upload, close with UploadComplete) for up to 150 MB of CSV. The fewer of the two is the floor for a
  kind, whatever our bulk threshold; Attachments cannot go through Bulk API 2.0.
- Reading an object's rows: the Query API returns up to 2,000 rows a page; a Bulk API 2.0 query job needs a
  create, at least one status call and one results page (no documented row cap per page). The fewer is the floor.
- Mailchimp list endpoints return at most 1,000 records a page (``count``); every listing costs at least one call.
"""

from __future__ import annotations

import math

COLLECTION_RECORDS = 200
BULK_INGEST_JOB_CALLS = 3
BULK_UPLOAD_BYTES = 150 * 1024 * 1024
QUERY_PAGE_ROWS = 2000
BULK_QUERY_JOB_CALLS = 3
MAILCHIMP_PAGE_RECORDS = 1000


def salesforce_write_calls(records: int, *, bulk_allowed: bool = True, csv_bytes: int = 0) -> int:
    """Fewest calls that can write ``records`` records of one kind (``csv_bytes``: their size as Bulk CSV)."""
    if records <= 0:
        return 0
    collections = math.ceil(records / COLLECTION_RECORDS)
    if not bulk_allowed:
        return collections
    jobs = max(1, math.ceil(csv_bytes / BULK_UPLOAD_BYTES))
    return min(collections, BULK_INGEST_JOB_CALLS * jobs)


def salesforce_read_calls(rows: int) -> int:
    """Fewest calls that can read ``rows`` rows of one object (an empty answer is still one call)."""
    return min(max(1, math.ceil(rows / QUERY_PAGE_ROWS)), BULK_QUERY_JOB_CALLS)


def mailchimp_calls(*listing_sizes: int, single_calls: int = 0) -> int:
    """Fewest Mailchimp calls for listings of these sizes at 1,000 a page, plus ``single_calls`` plain GETs."""
    return sum(max(1, math.ceil(size / MAILCHIMP_PAGE_RECORDS)) for size in listing_sizes) + single_calls
