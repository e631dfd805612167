"""Dagster assets and checks that wrap core/ metrics: member statuses and campaign totals."""
