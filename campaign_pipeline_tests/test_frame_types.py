"""Dagster types of the frames: one per pandera model, checking frames as the model does."""

from __future__ import annotations

from campaign_pipeline import frame_types
from campaign_pipeline.core import schemas


def test_dagster_types_are_shared_per_model():
    assert frame_types.dagster_type(schemas.MemberStatuses) is frame_types.MemberStatusesType
    assert frame_types.MemberStatusesType.type_check(None, schemas.empty_frame(schemas.MemberStatuses)).success
    bad = schemas.empty_frame(schemas.CampaignTotals).drop(columns="open_rate")
    assert not frame_types.CampaignTotalsType.type_check(None, bad).success
