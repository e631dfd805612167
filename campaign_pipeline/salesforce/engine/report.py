"""What a sync run did, per record kind: the report the push shows, and the ledger bookkeeping behind it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.ledger import RESULT_COLUMNS, SyncLedger

FAILURE_COLUMNS: tuple[str, ...] = ("object_kind", "sync_key", "campaign_id", "error_code", "error_message")
# The change table's values column: what is sent (the ledger holds hashes, so an update's old values are unknown).
CHANGE_VALUES_COLUMN = "values sent (new)"


# What a kind's outcome counts; every count is also kept per campaign (``KindOutcome.add``).
COUNTS: tuple[str, ...] = (
    "desired",
    "created",
    "updated",
    "unchanged",
    "failed",
    "rejected",
    "to_create",
    "to_update",
    "to_fail",
    "file_bytes",
)


@dataclass
class KindOutcome:
    kind: str
    sobject: str
    desired: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    rejected: int = 0
    # In preview: what the next real run would create, update and fail (its unchanged is ``unchanged``).
    to_create: int = 0
    to_update: int = 0
    to_fail: int = 0
    api: str = "none"
    # Decoded bytes of file data (blob fields) written: what the run adds to the org's file storage.
    file_bytes: int = 0
    # Campaign id -> count name -> count: a run over several campaign partitions reports each campaign its own.
    by_campaign: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, count: str, rows: pd.DataFrame, amounts: pd.Series | None = None) -> None:
        """Count ``rows`` (or their per-row ``amounts``) under ``count``, in total and per campaign."""
        if rows.empty:
            return
        values = amounts if amounts is not None else pd.Series(1, index=rows.index)
        setattr(self, count, getattr(self, count) + int(values.sum()))
        campaigns = rows["campaign_id"].astype(object).where(rows["campaign_id"].notna(), "").astype(str)
        for campaign_id, amount in values.groupby(campaigns.to_numpy()).sum().items():
            counts = self.by_campaign.setdefault(str(campaign_id), {})
            counts[count] = counts.get(count, 0) + int(amount)

    def for_campaign(self, campaign_id: str) -> KindOutcome:
        counts = self.by_campaign.get(campaign_id, {})
        own = {count: counts.get(count, 0) for count in COUNTS}
        return KindOutcome(self.kind, self.sobject, api=self.api, by_campaign={campaign_id: counts}, **own)


@dataclass
class SyncReport:
    """What a run did (or, in preview, would do), for logs and asset metadata."""

    target: str
    preview_only: bool
    outcomes: dict[str, KindOutcome] = field(default_factory=dict)
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(FAILURE_COLUMNS)))
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    stopped: str | None = None
    kind_errors: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    def total(self, attribute: str) -> int:
        return sum(getattr(outcome, attribute) for outcome in self.outcomes.values())

    def followed_by(self, later: SyncReport) -> SyncReport:
        """This run's report and a later one on the same client, as one (call counts are the client's, cumulative)."""
        frames = [frame for frame in (self.failures, later.failures) if len(frame)]
        changes = [frame for frame in (self.changes, later.changes) if len(frame)]
        return replace(
            later,
            outcomes={**self.outcomes, **later.outcomes},
            failures=pd.concat(frames, ignore_index=True) if frames else later.failures,
            changes=pd.concat(changes, ignore_index=True) if changes else later.changes,
            stopped=self.stopped or later.stopped,
            kind_errors={**self.kind_errors, **later.kind_errors},
        )

    def for_campaign(self, campaign_id: str) -> SyncReport:
        """This report cut down to one campaign's records: its counts, failures and changes (calls stay the run's)."""

        def own(frame: pd.DataFrame) -> pd.DataFrame:
            if "campaign_id" not in frame.columns:
                return frame
            return frame[frame["campaign_id"].astype(str) == campaign_id].reset_index(drop=True)

        return replace(
            self,
            outcomes={name: outcome.for_campaign(campaign_id) for name, outcome in self.outcomes.items()},
            failures=own(self.failures),
            changes=own(self.changes),
        )

    @property
    def write_calls(self) -> int:
        return self.calls.get("write", 0)

    @property
    def read_calls(self) -> int:
        return self.calls.get("read", 0)


class Bookkeeping:
    """Writes per-record results to the ledger and keeps this run's failures and change preview for the report."""

    def __init__(self, ledger: SyncLedger, *, dry_run: bool = False) -> None:
        self.ledger = ledger
        # A dry run (preview) keeps its change table and never writes a ledger row.
        self.dry_run = dry_run
        self.failures: list[pd.DataFrame] = []
        self.changes: list[pd.DataFrame] = []

    def record(self, kind: RecordKind, rows: pd.DataFrame, ids: Any, result: str, codes: Any, messages: Any) -> None:
        """Ledger rows for ``rows``: Salesforce Ids, result (ok / error / pending) and error code and message."""
        if rows.empty or self.dry_run:
            return
        frame = pd.DataFrame(
            {
                "sync_key": rows["sync_key"].to_numpy(),
                "campaign_id": rows["campaign_id"].to_numpy(),
                "salesforce_id": (ids.to_numpy() if isinstance(ids, pd.Series) else ids) if ids is not None else pd.NA,
                "content_hash": rows["content_hash"].to_numpy(),
                "last_result": result,
                "error_code": codes.to_numpy() if isinstance(codes, pd.Series) else codes,
                "error_message": messages.to_numpy() if isinstance(messages, pd.Series) else messages,
            },
            index=rows.index,
        )
        self.ledger.record_results(kind.name, frame[list(RESULT_COLUMNS)])
        if result == "error":
            self.failures.append(frame.assign(object_kind=kind.name))

    def note_changes(self, kind: RecordKind, changed: pd.DataFrame) -> None:
        """One line per record this run writes (or, in preview, would write): key, action and the values sent.

        The ledger keeps a hash of what was written, not the values, so an update shows its new values only.
        """
        fields = [name for name in salesforce_field_columns(changed) if name != kind.parent_field]
        summary = pd.Series("", index=changed.index, dtype=object)
        for name in fields[:6]:
            shown = changed[name].astype(object).where(changed[name].notna(), "null").astype(str).str.slice(0, 40)
            summary = summary + name + " = " + shown + "; "
        self.changes.append(
            pd.DataFrame(
                {
                    "campaign_id": changed["campaign_id"].to_numpy(),
                    "object_kind": kind.name,
                    "sync_key": changed["sync_key"].to_numpy(),
                    "action": np.where(changed["is_retry"], changed["action"] + " (retry)", changed["action"]),
                    "salesforce_id": changed["salesforce_id"].to_numpy(),
                    CHANGE_VALUES_COLUMN: summary.str.rstrip("; ").to_numpy(),
                }
            )
        )

    def fill(self, report: SyncReport) -> None:
        if self.failures:
            report.failures = pd.concat(self.failures, ignore_index=True)[list(FAILURE_COLUMNS)]
        if self.changes:
            report.changes = pd.concat(self.changes, ignore_index=True)
