"""Tests of the Salesforce side: desired records, diff, matching, ledger, sync engine, assets."""
