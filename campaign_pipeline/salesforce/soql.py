"""SOQL built from user data: the one IN-list chunker, so every long IN list stays under the org's URI limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import quote_plus

import pandas as pd
from simple_salesforce.format import format_soql

from campaign_pipeline.salesforce.resource import MAX_QUERY_URI_CHARS


def _literal_cost(value: str) -> int:
    # The escaped, quoted, URL-encoded literal plus its separating comma (encoded).
    return len(quote_plus(format_soql("{}", value))) + len(quote_plus(","))


def in_list_chunks(
    values: pd.DataFrame, template: str, max_uri_chars: int = MAX_QUERY_URI_CHARS, *, sort: bool = True
) -> Iterator[list[list[str]]]:
    """IN lists (one per column of ``values``) for ``template``, each query under the URI limit once encoded.

    ``template`` has one ``{}`` per column. Distinct rows are added while the query still fits; with ``sort``
    (the default) they are taken in sorted order, so rows sharing a parent share its literal and a chunk costs
    its distinct values, not its rows. Without it they keep the order given.
    """
    columns = list(values.columns)
    base = len(quote_plus(format_soql(template, *[[] for _ in columns])))
    distinct = values.drop_duplicates()
    if sort:
        distinct = distinct.sort_values(columns)
    chosen: list[dict[str, None]] = [{} for _ in columns]
    size = base
    for row in distinct.itertuples(index=False):
        cost = sum(_literal_cost(value) for value, seen in zip(row, chosen, strict=True) if value not in seen)
        if chosen[0] and size + cost > max_uri_chars:
            yield [list(seen) for seen in chosen]
            chosen = [{} for _ in columns]
            size = base
            cost = sum(_literal_cost(value) for value in row)
        for value, seen in zip(row, chosen, strict=True):
            seen[value] = None
        size += cost
    if chosen[0]:
        yield [list(seen) for seen in chosen]


def chunk_for_in_list(
    values: Sequence[str], template: str, max_uri_chars: int = MAX_QUERY_URI_CHARS
) -> Iterator[list[str]]:
    """One IN list for ``template`` (one ``{}``), cut so each query fits; values keep their order, repeats drop."""
    frame = pd.DataFrame({"value": pd.Series(list(values), dtype=object)})
    for (chunk,) in in_list_chunks(frame, template, max_uri_chars, sort=False):
        yield chunk
