"""IO manager whose storage is the landing tables: raw_email_events and campaign_recipients are stored once."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from campaign_pipeline.core.campaign_keys import campaign_id_from_key
from campaign_pipeline.mailchimp.landing import LANDED_EVENTS_TABLE, RECIPIENTS_TABLE
from campaign_pipeline.storage.database import PIPELINE_SCHEMA
from campaign_pipeline.stores import LandingStoreResource

# Asset name -> the landing table that is its storage.
LANDED_ASSETS = {"raw_email_events": LANDED_EVENTS_TABLE, "campaign_recipients": RECIPIENTS_TABLE}


class LandingIOManager(dg.ConfigurableIOManager):
    """Loads raw_email_events / campaign_recipients straight from the tables their assets land into.

    The assets land each new event and recipient once (COPY into the landing tables) and return no frame, so
    nothing is copied out and COPYed again into an asset table. A downstream load reads only its partitions'
    rows, and only the columns named by the input's ``columns`` metadata (``dg.AssetIn(metadata={"columns":
    [...]})``) when given. The landing store is its own resource, the one the landing assets write through.
    """

    landing_store: LandingStoreResource

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is not None:
            raise TypeError(
                f"{context.asset_key.to_user_string()} is stored in {PIPELINE_SCHEMA}.landing tables by the asset "
                f"itself; it must return a MaterializeResult, not {type(obj).__name__}"
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        name = context.asset_key.path[-1]
        if name not in LANDED_ASSETS:
            raise KeyError(f"{context.asset_key.to_user_string()} is not stored in the landing tables")
        campaign_ids = (
            [campaign_id_from_key(key) for key in context.asset_partition_keys]
            if context.has_asset_partitions
            else None
        )
        columns = (context.definition_metadata or {}).get("columns")
        store = self.landing_store.open()
        if name == "raw_email_events":
            return store.raw_email_events(campaign_ids, columns)
        return store.campaign_recipients(campaign_ids, columns)
