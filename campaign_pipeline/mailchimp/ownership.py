"""Which Mailchimp account each campaign partition was found in, so state never crosses from one account to another.

Dagster's dynamic partitions are bare keys; this table (``campaign_pipeline.campaign_partition_owners``) keeps,
per campaign id (``core.campaign_keys.campaign_id_from_key`` of the partition key, so a key that changes shape
keeps its owner; the column is still named ``partition_key``), the source identity (``mailchimp:sandbox`` or ``mailchimp:<account id>``) of the account whose campaign it
is. The sensor records it when it adds partitions; every run's preflight checks it, so a partition of the sandbox
is never synced from a live key (or the other way round), and a partition added by hand is claimed by the account
the first run reads it from. ``campaign-pipeline sandbox reset`` deletes the sandbox's.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from campaign_pipeline.storage.database import PIPELINE_SCHEMA, table_setup

OWNERS_TABLE = "campaign_partition_owners"


class PartitionOwnerMismatch(RuntimeError):
    """A campaign partition belongs to another Mailchimp account than the configured source."""


class PartitionOwners:
    """The owners table in ``schema`` (created on first use)."""

    def __init__(self, engine: sa.Engine, schema: str = PIPELINE_SCHEMA) -> None:
        self.engine = engine
        self._qualified = f'"{schema}"."{OWNERS_TABLE}"'
        with table_setup(engine, schema, OWNERS_TABLE) as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE IF NOT EXISTS {self._qualified} (partition_key text PRIMARY KEY, "
                    "source_identity text NOT NULL, added_at timestamptz NOT NULL DEFAULT now())"
                )
            )

    def record(self, keys: Sequence[str], source: str) -> None:
        """Keys found in ``source``; a key already owned keeps its owner (``check`` reports a conflict)."""
        if not keys:
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {self._qualified} (partition_key, source_identity) "
                    "SELECT unnest(CAST(:keys AS text[])), :source ON CONFLICT (partition_key) DO NOTHING"
                ),
                {"keys": list(keys), "source": source},
            )

    def owners(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        """partition key -> source identity (every key, or only ``keys``)."""
        query = f"SELECT partition_key, source_identity FROM {self._qualified}"
        params: dict[str, object] = {}
        if keys is not None:
            query += " WHERE partition_key = ANY(:keys)"
            params["keys"] = list(keys)
        with self.engine.connect() as conn:
            return {key: source for key, source in conn.execute(sa.text(query), params)}

    def check(self, keys: Sequence[str], source: str) -> None:
        """Claim unowned keys for ``source``; raise naming the keys and what to do if another account owns one."""
        self.record(keys, source)
        foreign = {key: owner for key, owner in self.owners(keys).items() if owner != source}
        if foreign:
            shown = ", ".join(f"{key} ({owner})" for key, owner in sorted(foreign.items())[:5])
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise PartitionOwnerMismatch(
                f"campaign partition(s) {shown}{more} belong to another Mailchimp account than the source now "
                f"configured ({source}); their data and Salesforce state are never mixed with this account's. "
                "Run `campaign-pipeline sandbox reset` to delete the sandbox's state, or unset the credentials "
                "to go back to the account those partitions came from."
            )

    def forget(self, source: str) -> list[str]:
        """Delete the owner rows of ``source``; returns the keys it owned."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.text(f"DELETE FROM {self._qualified} WHERE source_identity = :source RETURNING partition_key"),
                {"source": source},
            )
            return sorted(key for (key,) in rows)
