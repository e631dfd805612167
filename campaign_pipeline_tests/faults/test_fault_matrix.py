"""The fault matrix's CI subset: real run processes, a fault through the sandbox's knobs, the org compared key by key.

The whole matrix (every writing mode × every fault) is `python -m bench.faults`; CI keeps the one fault that
crosses every boundary: the run process SIGKILLed between two sObject Collections batches (dealt by the
sandbox org at the second batch's request), then a re-run that must leave the org exactly as one clean run.
"""

from __future__ import annotations

import pytest

from bench.faults import run_matrix


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three run processes; a hang guard, not a timing assertion
def test_a_run_killed_between_collections_batches_converges_to_the_clean_run_on_a_rerun():
    summary = run_matrix(["campaign"], ["kill_between_collections_batches"], members=1000)
    (entry,) = summary["entries"]
    assert entry["exercised"], "the kill never fired: the run did not reach a second Collections batch"
    assert entry["runs"][0]["returncode"] == -9 and entry["rerun_succeeded"]
    assert (entry["lost"], entry["duplicated"], entry["unexpected"], entry["mismatched"], entry["hung"]) == (
        0,
        0,
        0,
        0,
        0,
    ), entry["by_object"]
    assert entry["status"] == "survived" and summary["survived"] == 1
