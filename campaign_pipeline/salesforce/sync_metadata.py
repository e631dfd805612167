"""What salesforce_sync shows per campaign partition and per run, and the run tag that makes a run a dry run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from campaign_pipeline.asset_metadata import RUN_WIDE_CALLS, escaped_markdown_table, frame_table
from campaign_pipeline.core.opt_out_records import ACCOUNT_OPT_OUT, CONTACT_OPT_OUT, LEAD_OPT_OUT
from campaign_pipeline.salesforce.engine import SyncReport

# A run tag: `campaign_pipeline/preview` = `true` makes this one run a dry run (the Launchpad's tags, or
# `campaign-pipeline demo --preview`): it reads, diffs and counts, and writes nothing to Salesforce or the ledger.
PREVIEW_TAG = "campaign_pipeline/preview"
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0", "")

# Objects whose records take the org's file storage (their blob fields), reported as file_bytes.
FILE_SOBJECTS = frozenset({"Attachment", "ContentNote", "ContentVersion"})
CHANGE_ROWS = 20


def preview_requested(tags: Mapping[str, str]) -> bool:
    """Whether the run's tags ask for a dry run; a value other than true/false is refused with the allowed ones."""
    value = str(tags.get(PREVIEW_TAG, "")).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise dg.Failure(
        description=f"run tag {PREVIEW_TAG} is {tags[PREVIEW_TAG]!r}; set it to true (a dry run) or false",
        allow_retries=False,
    )


def campaign_metadata(report: SyncReport) -> dict[str, Any]:
    """One campaign's counts, per-kind table, failures and changes (``report`` cut to that campaign).

    A real run shows created / updated / unchanged / failed; a preview shows what the next real run would do:
    would_create / would_update / would_skip (unchanged) / would_fail, which add up to desired.
    """
    preview = report.preview_only
    counts = (
        {"would_create": "to_create", "would_update": "to_update", "would_skip": "unchanged", "would_fail": "to_fail"}
        if preview
        else {"created": "created", "updated": "updated", "unchanged": "unchanged", "failed": "failed"}
    )
    metadata: dict[str, Any] = {"desired": report.total("desired")}
    metadata.update({label: report.total(attribute) for label, attribute in counts.items()})
    with_files = any(o.sobject in FILE_SOBJECTS for o in report.outcomes.values())
    rows = [
        {
            "kind": name,
            "sobject": outcome.sobject,
            "desired": outcome.desired,
            **{label: getattr(outcome, attribute) for label, attribute in counts.items()},
            **({} if preview else {"api": outcome.api}),
            **({"file_bytes": outcome.file_bytes} if with_files else {}),
        }
        for name, outcome in report.outcomes.items()
    ]
    if rows:
        metadata["per_kind"] = frame_table(pd.DataFrame(rows), rows=None)
    opt_outs = [
        report.outcomes[name] for name in (CONTACT_OPT_OUT, LEAD_OPT_OUT, ACCOUNT_OPT_OUT) if name in report.outcomes
    ]
    if opt_outs:
        # Opt-out sync: people marked HasOptedOutOfEmail = true by this run (the CLI summary shows it too).
        metadata["would_opt_out" if preview else "opted_out"] = sum(
            o.to_update if preview else o.updated for o in opt_outs
        )
    if with_files and not preview:
        # What this run added to the org's file storage (notes and files count against it, not data storage).
        metadata["file_bytes"] = report.total("file_bytes")
    if len(report.failures):
        metadata["failures"] = escaped_markdown_table(report.failures.drop(columns=["campaign_id"]), CHANGE_ROWS)
    if len(report.changes):
        metadata["changes"] = frame_table(report.changes.drop(columns=["campaign_id"]), CHANGE_ROWS)
    return metadata


def run_metadata(report: SyncReport, campaigns: int) -> dict[str, Any]:
    """What belongs to the whole run, whatever its campaigns: the target, the mode, API calls, a stop."""
    metadata: dict[str, Any] = {
        "salesforce_target": report.target,
        "preview_only": report.preview_only,
        "write_calls": report.write_calls,
        "read_calls": report.read_calls,
        "api_calls": sum(report.calls.values()),
        "retries": report.retries,
    }
    if campaigns > 1:
        metadata["campaigns_in_run"] = dg.MetadataValue.int(campaigns)
        metadata["api_calls_are"] = RUN_WIDE_CALLS
    if report.stopped:
        metadata["stopped"] = report.stopped
    if report.kind_errors:
        metadata["kind_errors"] = frame_table(
            pd.DataFrame({"kind": list(report.kind_errors), "error": list(report.kind_errors.values())}), rows=None
        )
    return metadata


def report_metadata(report: SyncReport) -> dict[str, Any]:
    """A one-campaign (or whole-report) view: the campaign's metadata and the run's, as one mapping."""
    return {**run_metadata(report, 1), **campaign_metadata(report)}
