"""Crash lookups batch their SOQL: IN-list chunks over several fields, each query under the URI limit."""

from __future__ import annotations

from urllib.parse import quote_plus

import pandas as pd
from simple_salesforce.format import format_soql

from campaign_pipeline.salesforce.soql import in_list_chunks

TEMPLATE = "SELECT Id FROM Note WHERE ParentId IN {} AND Title IN {}"


def test_chunks_stay_under_the_limit_cover_every_row_and_share_repeated_values() -> None:
    rows = pd.DataFrame(
        {
            "ParentId": [f"003{n:015d}" for n in range(400)] * 2,
            "Title": ["Email response: A (c1)"] * 400 + ["Email response: O'Brien (c2)"] * 400,
        }
    )
    chunks = list(in_list_chunks(rows, TEMPLATE, max_uri_chars=3_000))
    assert len(chunks) > 1
    for parents, titles in chunks:
        assert len(quote_plus(format_soql(TEMPLATE, parents, titles))) <= 3_000
        # Titles repeat across rows: a chunk lists each once.
        assert len(titles) == len(set(titles)) <= 2
    covered = {(parent, title) for parents, titles in chunks for parent in parents for title in titles}
    assert set(rows.itertuples(index=False, name=None)) <= covered
    # ~400 distinct parents x 2 titles need a handful of queries, not 800.
    assert len(chunks) <= 12


def test_one_small_chunk_when_everything_fits() -> None:
    rows = pd.DataFrame({"ParentId": ["a", "b", "a"], "Title": ["t", "t", "u"]})
    assert list(in_list_chunks(rows, TEMPLATE)) == [[["a", "b"], ["t", "u"]]]
