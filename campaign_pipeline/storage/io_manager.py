"""Dagster IO manager that keeps asset frames in Postgres: one table per asset, partition-scoped replace."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from campaign_pipeline.core.campaign_keys import CampaignKeyError, campaign_id_from_key
from campaign_pipeline.storage.database import PIPELINE_SCHEMA, get_engine
from campaign_pipeline.storage.frames import read_frame, write_frame


def table_for(asset_key: dg.AssetKey) -> str:
    """`asset_<path>`: one table per asset in the pipeline schema."""
    return "asset_" + "__".join(asset_key.path)


def stored_partition(partition_key: str) -> str:
    """The key a partition's rows are stored under: a campaign partition's campaign id, any other key as it is.

    Campaign keys name the send date and title for people (`2026-11-03_newsletter_7174cc3265`), but rows are the
    campaign's (the frames' campaign_id column): stored by campaign id, they stay valid when the key changes shape.
    """
    try:
        return campaign_id_from_key(partition_key)
    except CampaignKeyError:
        return partition_key


def _stored_partitions(context: dg.InputContext | dg.OutputContext) -> list[str] | None:
    return [stored_partition(key) for key in context.asset_partition_keys] if context.has_asset_partitions else None


class PostgresPandasIOManager(dg.ConfigurableIOManager):
    """Stores each asset's DataFrame in `<schema>.asset_<key>`.

    Re-materialising partition A replaces A's rows inside one transaction and never touches B. Rows are
    stored under ``stored_partition(key)`` (a campaign partition's campaign id). A run that covers several
    partitions (a batched backfill) splits its frame by the column named in the asset's `partition_expr`
    metadata (`campaign_id`), whose values are those stored keys. Every run process reads the same tables.
    """

    database_url: str | None = None
    schema_name: str = PIPELINE_SCHEMA

    def _engine(self):
        return get_engine(self.database_url)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: PostgresPandasIOManager stores pandas DataFrames, "
                f"got {type(obj).__name__}"
            )
        partitions = _stored_partitions(context)
        partition_expr = (context.definition_metadata or {}).get("partition_expr")
        rows = write_frame(
            self._engine(),
            table_for(context.asset_key),
            obj,
            partitions=partitions,
            partition_column=partition_expr,
            schema=self.schema_name,
        )
        table = {"table": f"{self.schema_name}.{table_for(context.asset_key)}"}
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if len(keys) <= 1 or partition_expr is None:
            context.add_output_metadata({"stored_rows": rows, **table})
            return
        # A batched run: each partition's materialization says how many of the rows are its own.
        own_rows = obj[partition_expr].astype(str).value_counts()
        context.add_output_metadata(table)
        for key in keys:
            context.step_context.add_asset_metadata(
                {"stored_rows": int(own_rows.get(stored_partition(key), 0))},
                asset_key=context.asset_key,
                partition_key=key,
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """The input's partitions only, and only the columns in the input's ``columns`` metadata when given."""
        partitions = _stored_partitions(context)
        return read_frame(
            self._engine(),
            table_for(context.asset_key),
            partitions=partitions,
            schema=self.schema_name,
            columns=(context.definition_metadata or {}).get("columns"),
        )
