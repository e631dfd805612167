"""Bulk API 2.0 query jobs: a whole object's rows in a few calls (create, poll, one call per results page)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from campaign_pipeline.salesforce.bulk_polling import JobPoller
from campaign_pipeline.salesforce.resource import SalesforceCallFailed, SalesforceClient

# Rows per results page. Salesforce documents no maximum for maxRecords, only that large pages may be split by
# size; fewer, bigger pages mean fewer calls, and a page this size is a few tens of MB of CSV.
RESULTS_PAGE_ROWS = 250_000
POLL_LIMIT = 120
_FINAL_STATES = ("JobComplete", "Failed", "Aborted")


@dataclass(frozen=True)
class QueryJob:
    """A Bulk API 2.0 query job Salesforce is working on (``start_query`` made it; ``query_rows`` reads it)."""

    id: str
    state: str

    @property
    def path(self) -> str:
        return f"jobs/query/{self.id}"


def start_query(client: SalesforceClient, soql: str, *, include_deleted: bool = False) -> QueryJob:
    """Create the job and return at once: several jobs started together run side by side in the org, so the
    polls of the first one waited on cover the others' processing too.

    ``include_deleted`` runs the job as ``queryAll`` (deleted and archived records too, with IsDeleted).
    Every call is a read: creating a query job changes nothing in the org, so a retry after a lost answer
    only leaves an extra job, which Salesforce removes after seven days.
    """
    operation = "queryAll" if include_deleted else "query"
    job = client.rest(
        "read",
        f"Bulk query job ({operation})",
        "POST",
        "jobs/query",
        data=json.dumps({"operation": operation, "query": soql, "contentType": "CSV", "lineEnding": "LF"}),
    )
    return QueryJob(id=str(job["id"]), state=str(job.get("state", "")))


def query_rows(
    client: SalesforceClient, job: QueryJob, *, page_rows: int = RESULTS_PAGE_ROWS
) -> Iterator[pd.DataFrame]:
    """The job's rows as frames of text columns (empty text = null), one frame per results page, once it ends."""
    job_path = job.path
    state = job.state
    # A query job's size is unknown until it ends, so its polls only back off (to half a minute).
    poller = JobPoller(None, first=0.1)
    for poll in range(POLL_LIMIT):
        if state in _FINAL_STATES:
            break
        if poll:
            client.sleep(poller.next_wait(0))
        state = str(client.rest("read", "Bulk query job status", "GET", job_path).get("state", ""))
    if state != "JobComplete":
        raise SalesforceCallFailed(
            f"Bulk query job {job.id} ended in state {state or 'unknown'} instead of JobComplete",
            error_code="BULK_QUERY_FAILED",
        )
    locator: str | None = None
    while True:
        path = f"{job_path}/results?maxRecords={page_rows}" + (f"&locator={locator}" if locator else "")
        response = client.raw("read", "Bulk query results page", "GET", path, headers={"Accept": "text/csv"})
        # Bulk results are UTF-8; without a charset in Content-Type requests would read them as Latin-1
        # and turn every accented address into mojibake that matches nobody.
        text = response.content.decode("utf-8")
        if text.strip():
            yield pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        locator = response.headers.get("Sforce-Locator")
        if not locator or locator == "null":
            return
