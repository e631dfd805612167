"""`campaign-pipeline sandbox reset`: delete every piece of state the sandboxes left, keep every live account's.

What goes: the sandbox account's campaign partitions (those the owners table gives to ``mailchimp:sandbox`` and any
campaign id of the sandbox account), their landed events, recipients and asset frames, sync ledger rows whose source
is the sandbox account or whose target is the sandbox org, sensor cursors (the deployed sensor's and the demo's)
made for the sandbox account, the sandbox org itself (its Postgres schema; it is seeded afresh on next use) and
the sandbox account's clock file. Rows, partitions and cursors of live accounts and orgs are left as they are.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from campaign_pipeline.core.campaign_keys import CampaignKeyError, campaign_id_from_key
from campaign_pipeline.mailchimp.ownership import OWNERS_TABLE, PartitionOwners
from campaign_pipeline.mailchimp.partitions import MAILCHIMP_CAMPAIGNS_PARTITIONS
from campaign_pipeline.mailchimp.sensors import NewSendsCursor
from campaign_pipeline.salesforce.ledger import LEDGER_TABLE, SyncLedger
from campaign_pipeline.sandbox.resources import (
    MAILCHIMP_SANDBOX_IDENTITY,
    SALESFORCE_SANDBOX_IDENTITY,
    SandboxMailchimpResource,
    SandboxSalesforceResource,
    sandbox_state_path_default,
)
from campaign_pipeline.storage.database import PIPELINE_SCHEMA, data_dir, get_engine

logger = logging.getLogger(__name__)

# Pipeline tables whose rows belong to one campaign (landing: campaign_id; asset frames: _partition).
_PARTITION_COLUMNS = ("campaign_id", "_partition")
_KEPT_TABLES = {LEDGER_TABLE, OWNERS_TABLE}


@dataclass
class ResetReport:
    partitions: list[str] = field(default_factory=list)
    pipeline_rows: int = 0
    ledger_rows: int = 0
    sensor_cursors: int = 0
    sandbox_org: bool = False
    sandbox_clock: bool = False

    def lines(self) -> list[str]:
        return [
            f"campaign partitions of {MAILCHIMP_SANDBOX_IDENTITY} deleted: {len(self.partitions)}",
            f"landed rows and asset-frame rows of those campaigns deleted: {self.pipeline_rows}",
            f"sync ledger rows of {MAILCHIMP_SANDBOX_IDENTITY} or {SALESFORCE_SANDBOX_IDENTITY} deleted: "
            f"{self.ledger_rows}",
            f"sensor cursors of {MAILCHIMP_SANDBOX_IDENTITY} cleared: {self.sensor_cursors}",
            f"sandbox org (its records, jobs and usage) {'deleted' if self.sandbox_org else 'was not there'}",
            f"sandbox account clock {'reset' if self.sandbox_clock else 'was not there'}",
            "live accounts' and orgs' state was kept",
        ]


def _sandbox_campaign_ids() -> set[str]:
    """Every campaign id the sandbox account has (read from its clock file; none if there is none)."""
    state_path = Path(sandbox_state_path_default())
    if not state_path.exists():
        return set()
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

    defaults = SandboxMailchimpResource()
    seed = json.loads(state_path.read_text()).get("seed", defaults.sandbox_seed)
    account = SandboxAccount(seed=seed, n_members=defaults.sandbox_members, state_path=state_path)
    return {spec.campaign_id for spec in account.campaign_specs(include_unsent=True)}


def _delete_campaign_rows(engine: sa.Engine, keys: list[str]) -> int:
    if not keys:
        return 0
    deleted = 0
    with engine.begin() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT DISTINCT c.table_name, c.column_name FROM information_schema.columns c "
                "JOIN pg_class t ON t.relname = c.table_name "
                "JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = c.table_schema "
                "WHERE c.table_schema = :schema AND c.column_name = ANY(:columns) "
                "AND NOT t.relispartition AND t.relkind IN ('r', 'p')"
            ),
            {"schema": PIPELINE_SCHEMA, "columns": list(_PARTITION_COLUMNS)},
        ).all()
        for table, column in tables:
            if table in _KEPT_TABLES:
                continue
            result = conn.execute(
                sa.text(f'DELETE FROM "{PIPELINE_SCHEMA}"."{table}" WHERE "{column}" = ANY(:keys)'), {"keys": keys}
            )
            deleted += int(result.rowcount or 0)
    return deleted


def _clear_sandbox_cursors(instance: dg.DagsterInstance) -> int:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import SensorInstigatorData

    cleared = 0
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        data = state.instigator_data
        if not isinstance(data, SensorInstigatorData) or not data.cursor:
            continue
        try:
            source = NewSendsCursor.parse(data.cursor).source
        except (ValueError, AttributeError):
            continue  # another sensor's cursor
        if source == MAILCHIMP_SANDBOX_IDENTITY:
            instance.update_instigator_state(state.with_data(data._replace(cursor=None)))
            cleared += 1
    demo_cursor = data_dir() / "demo_sensor_cursor.json"
    if demo_cursor.exists() and NewSendsCursor.parse(demo_cursor.read_text()).source in (
        MAILCHIMP_SANDBOX_IDENTITY,
        None,
    ):
        demo_cursor.unlink()
        cleared += 1
    return cleared


def reset_sandbox_state(instance: dg.DagsterInstance) -> ResetReport:
    engine = get_engine()
    report = ResetReport()
    owners = PartitionOwners(engine)
    owned = set(owners.forget(MAILCHIMP_SANDBOX_IDENTITY))
    # Owners, landed rows and stored frames are keyed by campaign id; partition keys carry it last.
    held = {}
    for key in instance.get_dynamic_partitions(MAILCHIMP_CAMPAIGNS_PARTITIONS):
        try:
            held[key] = campaign_id_from_key(key)
        except CampaignKeyError:
            continue
    still_owned = owners.owners()  # partitions of other accounts are never deleted, even with a sandbox id
    sandbox_ids = sorted((owned | (_sandbox_campaign_ids() & set(held.values()))) - set(still_owned))
    for key, campaign_id in held.items():
        if campaign_id in sandbox_ids:
            instance.delete_dynamic_partition(MAILCHIMP_CAMPAIGNS_PARTITIONS, key)
    report.partitions = sandbox_ids
    report.pipeline_rows = _delete_campaign_rows(engine, sandbox_ids)
    ledger = SyncLedger(engine)
    report.ledger_rows = ledger.forget(source=MAILCHIMP_SANDBOX_IDENTITY, target=SALESFORCE_SANDBOX_IDENTITY)
    report.sensor_cursors = _clear_sandbox_cursors(instance)
    schema = SandboxSalesforceResource().sandbox_schema
    with engine.begin() as conn:
        report.sandbox_org = bool(
            conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
        )
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    state_path = Path(sandbox_state_path_default())
    report.sandbox_clock = state_path.exists()
    for path in (state_path, state_path.with_name(state_path.name + ".lock")):
        path.unlink(missing_ok=True)
    return report
