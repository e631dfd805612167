"""The sync ledger in Postgres: pending intent, results, failures, Ids never forgotten."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from campaign_pipeline.core.diff import RESULT_ERROR, RESULT_OK, RESULT_PENDING
from campaign_pipeline.salesforce.ledger import SyncLedger


@pytest.fixture
def ledger(pg_engine) -> SyncLedger:
    return SyncLedger(pg_engine, schema=f"ledger_test_{uuid.uuid4().hex[:8]}")


def _results(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "sync_key",
            "campaign_id",
            "salesforce_id",
            "content_hash",
            "last_result",
            "error_code",
            "error_message",
        ],
    )


def test_pending_then_result_keeps_the_id_and_stores_error_text_verbatim(ledger: SyncLedger) -> None:
    ledger.record_results("campaign_member", _results([("c1|003A", "c1", "00vA", "h1", RESULT_OK, None, None)]))
    ledger.record_pending(
        "campaign_member", pd.DataFrame({"sync_key": ["c1|003A", "c1|003B"], "campaign_id": "c1", "content_hash": "h2"})
    )
    loaded = ledger.load("campaign_member", ["c1"]).set_index("sync_key")
    assert loaded.loc["c1|003A", "salesforce_id"] == "00vA"  # a pending mark keeps the known Id
    assert loaded.loc["c1|003A", "last_result"] == RESULT_PENDING
    assert pd.isna(loaded.loc["c1|003B", "salesforce_id"])

    message = 'Field "Name", too long:\ttab, comma, "quote" \\ backslash\nnewline'
    ledger.record_results(
        "campaign_member", _results([("c1|003B", "c1", None, "h2", RESULT_ERROR, "STRING_TOO_LONG", message)])
    )
    failures = ledger.failures("campaign_member", ["c1"])
    assert failures["sync_key"].tolist() == ["c1|003B"]
    assert failures.loc[0, "error_code"] == "STRING_TOO_LONG"
    assert failures.loc[0, "error_message"] == message


def test_load_is_scoped_by_kind_and_campaign(ledger: SyncLedger) -> None:
    ledger.record_results("campaign", _results([("c1", "c1", "701A", "h", RESULT_OK, None, None)]))
    ledger.record_results("campaign", _results([("c2", "c2", "701B", "h", RESULT_OK, None, None)]))
    assert ledger.load("campaign", ["c2"])["salesforce_id"].tolist() == ["701B"]
    assert ledger.load("campaign_member", ["c1"]).empty
    assert sorted(ledger.load("campaign")["sync_key"]) == ["c1", "c2"]


def test_unknown_result_is_refused(ledger: SyncLedger) -> None:
    with pytest.raises(ValueError, match="maybe"):
        ledger.record_results("campaign", _results([("c1", "c1", None, "h", "maybe", None, None)]))


def test_profiles_of_one_deployment_never_see_each_others_rows(pg_engine) -> None:
    schema = f"ledger_test_{uuid.uuid4().hex[:8]}"
    members, notes = SyncLedger(pg_engine, schema=schema, scope="members"), SyncLedger(pg_engine, schema=schema)
    members.record_results("campaign", _results([("c1", "c1", "701A", "h1", RESULT_OK, None, None)]))
    notes.record_results("campaign", _results([("c1", "c1", "701B", "h2", RESULT_ERROR, "X", "bad")]))
    assert members.load("campaign")["salesforce_id"].tolist() == ["701A"]
    assert notes.load("campaign")["salesforce_id"].tolist() == ["701B"]
    assert members.failures().empty and notes.failures()["sync_key"].tolist() == ["c1"]


def test_a_ledger_made_before_scopes_keeps_its_rows_as_the_classic_profiles(pg_engine) -> None:
    import sqlalchemy as sa

    schema = f"ledger_test_{uuid.uuid4().hex[:8]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(
            sa.text(
                f'CREATE TABLE "{schema}".sync_ledger (object_kind text NOT NULL, sync_key text NOT NULL, '
                "campaign_id text, salesforce_id text, content_hash text, last_result text NOT NULL, "
                "error_code text, error_message text, attempted_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (object_kind, sync_key))"
            )
        )
        conn.execute(
            sa.text(
                f'INSERT INTO "{schema}".sync_ledger (object_kind, sync_key, campaign_id, salesforce_id, '
                "content_hash, last_result) VALUES ('campaign', 'c1', 'c1', '701A', 'h1', 'ok')"
            )
        )
    classic = SyncLedger(pg_engine, schema=schema)
    assert classic.load("campaign")["salesforce_id"].tolist() == ["701A"]
    named = SyncLedger(pg_engine, schema=schema, scope="members")
    assert named.load("campaign").empty
    named.record_results("campaign", _results([("c1", "c1", "701C", "h1", RESULT_OK, None, None)]))
    assert classic.load("campaign")["salesforce_id"].tolist() == ["701A"]


SANDBOX = {"source": "mailchimp:sandbox", "target": "salesforce:sandbox"}
LIVE = {"source": "mailchimp:us21-acct", "target": "salesforce:00D5g000000LIVE"}


def test_a_ledger_reads_and_writes_only_its_own_source_and_target(pg_engine) -> None:
    schema = f"ledger_test_{uuid.uuid4().hex[:8]}"
    sandbox, live = SyncLedger(pg_engine, schema=schema, **SANDBOX), SyncLedger(pg_engine, schema=schema, **LIVE)
    other_org = SyncLedger(pg_engine, schema=schema, source=SANDBOX["source"], target=LIVE["target"])
    sandbox.record_results("campaign", _results([("c1", "c1", "701SANDBOX", "h1", RESULT_OK, None, None)]))
    sandbox.record_results("note", _results([("c1|003A", "c1", None, "h", RESULT_ERROR, "X", "bad")]))
    # Switching the target (or the source) never takes the sandbox's Ids, hashes or failures for its own.
    assert live.load("campaign").empty and other_org.load("campaign").empty
    assert live.failures().empty
    live.record_results("campaign", _results([("c1", "c1", "701LIVE", "h1", RESULT_OK, None, None)]))
    assert sandbox.load("campaign")["salesforce_id"].tolist() == ["701SANDBOX"]
    assert live.load("campaign")["salesforce_id"].tolist() == ["701LIVE"]
    owners = {(o.source, o.target): o.rows for o in sandbox.owners().itertuples()}
    assert owners == {(SANDBOX["source"], SANDBOX["target"]): 2, (LIVE["source"], LIVE["target"]): 1}
    # Resetting the sandbox's state deletes its rows only.
    assert sandbox.forget(source=SANDBOX["source"], target=SANDBOX["target"]) == 2
    assert sandbox.load("campaign").empty and live.load("campaign")["salesforce_id"].tolist() == ["701LIVE"]


def test_rows_from_before_identities_are_a_lookup_hint_never_an_id(pg_engine) -> None:
    schema = f"ledger_test_{uuid.uuid4().hex[:8]}"
    old = SyncLedger(pg_engine, schema=schema)  # as a ledger written before rows knew their org
    old.record_results(
        "task",
        _results(
            [
                ("c1|e1", "c1", "00TOLD1", "h1", RESULT_OK, None, None),
                ("c1|e2", "c1", "00TOLD2", "h2", RESULT_OK, None, None),
                ("c1|e3", "c1", None, "h3", RESULT_ERROR, "X", "never made"),
            ]
        ),
    )
    owned = SyncLedger(pg_engine, schema=schema, **SANDBOX)
    owned.record_results("task", _results([("c1|e2", "c1", "00TNEW2", "h2", RESULT_OK, None, None)]))
    loaded = owned.load("task", ["c1"]).set_index("sync_key")
    # e1 may exist in this org (written there before identities): pending without Id, so the engine looks it up.
    assert loaded.loc["c1|e1", "last_result"] == RESULT_PENDING and pd.isna(loaded.loc["c1|e1", "salesforce_id"])
    assert pd.isna(loaded.loc["c1|e1", "content_hash"])
    assert loaded.loc["c1|e2", "salesforce_id"] == "00TNEW2"  # its own row wins
    assert "c1|e3" not in loaded.index  # never made: nothing to look up
    assert owned.failures().empty


def test_an_older_ledger_gains_identity_columns_and_keeps_its_rows(pg_engine) -> None:
    import sqlalchemy as sa

    schema = f"ledger_test_{uuid.uuid4().hex[:8]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(
            sa.text(
                f"CREATE TABLE \"{schema}\".sync_ledger (scope text NOT NULL DEFAULT '', object_kind text NOT NULL, "
                "sync_key text NOT NULL, campaign_id text, salesforce_id text, content_hash text, "
                "last_result text NOT NULL, error_code text, error_message text, "
                "attempted_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, object_kind, sync_key))"
            )
        )
        conn.execute(
            sa.text(
                f'INSERT INTO "{schema}".sync_ledger (object_kind, sync_key, campaign_id, salesforce_id, '
                "content_hash, last_result) VALUES ('campaign', 'c1', 'c1', '701A', 'h1', 'ok')"
            )
        )
    assert SyncLedger(pg_engine, schema=schema).load("campaign")["salesforce_id"].tolist() == ["701A"]
    live = SyncLedger(pg_engine, schema=schema, **LIVE)
    live.record_results("campaign", _results([("c1", "c1", "701L", "h1", RESULT_OK, None, None)]))
    assert SyncLedger(pg_engine, schema=schema).load("campaign")["salesforce_id"].tolist() == ["701A"]
    assert live.load("campaign")["salesforce_id"].tolist() == ["701L"]
