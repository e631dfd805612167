"""Salesforce: the client resource, matching, the sync ledger and engine, and the push assets."""
