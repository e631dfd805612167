"""Pure pandas logic: schemas, statuses, metrics, Salesforce records, diff. No I/O, no clock, no Dagster."""
