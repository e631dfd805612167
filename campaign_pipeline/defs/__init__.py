"""Sync profile instances of this deployment, one folder each (`dg scaffold defs ...CampaignSync <folder>`)."""
