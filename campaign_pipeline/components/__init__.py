"""Dagster components of campaign_pipeline: one sync profile per component instance (`dg scaffold defs`)."""

from campaign_pipeline.components.campaign_sync import CampaignSync

__all__ = ["CampaignSync"]
