"""The fault matrix's CI subset: real run processes, faults through the sandboxes' knobs, the org compared key by key.

The whole matrix (every writing mode × every fault) is `python -m bench.faults`; this keeps one mode and two
faults that cross a process boundary: a SIGKILL between two sObject Collections batches, and a lost answer to
an upsert, each followed by a re-run that must leave the org exactly as one clean run does.
"""

from __future__ import annotations

import pytest

from bench.faults import run_matrix


@pytest.mark.slow
def test_a_kill_between_batches_and_a_lost_upsert_answer_converge_to_the_clean_run():
    summary = run_matrix(
        ["campaign"], ["kill_between_collections_batches", "lost_answer_collections_upsert"], members=1000
    )
    assert summary["scenarios"] == 2
    for entry in summary["entries"]:
        assert entry["exercised"], f"{entry['scenario']}: the fault never fired"
        assert entry["runs"][0]["success"] is not True or entry["scenario"] != "kill_between_collections_batches"
        assert (entry["lost"], entry["duplicated"], entry["unexpected"], entry["mismatched"], entry["hung"]) == (
            0,
            0,
            0,
            0,
            0,
        ), entry
        assert entry["status"] == "survived"
    assert summary["survived"] == 2
