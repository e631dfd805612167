"""Dagster types of the frames that cross asset boundaries, built from the pandera models in core.schemas.

They live outside core so core stays free of Dagster (an import contract in pyproject.toml checks it).
"""

from __future__ import annotations

import functools
import warnings

import dagster as dg
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from campaign_pipeline.core.schemas import (
    CampaignRecipients,
    CampaignTotals,
    MailchimpCampaignReport,
    MemberStatuses,
    RawEmailEvents,
)


@functools.cache
def dagster_type(model: type[pa.DataFrameModel]) -> dg.DagsterType:
    """The Dagster type of a model; cached so every asset shares one type object per name."""
    # The converter is marked beta; we pin dagster-pandera, so the warning is noise in every import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        return pandera_schema_to_dagster_type(model)


RawEmailEventsType = dagster_type(RawEmailEvents)
CampaignRecipientsType = dagster_type(CampaignRecipients)
MailchimpCampaignReportType = dagster_type(MailchimpCampaignReport)
MemberStatusesType = dagster_type(MemberStatuses)
CampaignTotalsType = dagster_type(CampaignTotals)
