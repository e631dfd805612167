"""Postgres, embedded or external: connection, the pandas IO manager and helpers for the pipeline's tables."""
