"""Finding records that already exist in Salesforce (crash recovery, DUPLICATE_VALUE, org-made records)."""

from __future__ import annotations

import pandas as pd
from simple_salesforce.format import format_soql

from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.salesforce.engine.context import SyncContext
from campaign_pipeline.salesforce.engine.encoding import none_if_na, same_value, wire_value
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.engine.report import KindOutcome
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.salesforce.soql import in_list_chunks


def adopt_existing(
    ctx: SyncContext, kind: RecordKind, todo: pd.DataFrame, lookup: pd.Series, outcome: KindOutcome
) -> pd.DataFrame:
    """Find records that already exist for creates; adopt their Id, and skip the write if they already match.

    Returns ``todo`` with adopted rows turned into updates (and those already up to date recorded and dropped).
    """
    candidates = todo[lookup]
    types = ctx.fields.types_of(kind)
    # Blob fields (Attachment.Body) cannot be read for several records in one query: they are not selected, so
    # an adopted record is updated with them rather than compared.
    fields = [
        name
        for name in salesforce_field_columns(todo)
        if name not in kind.identity_fields and types.get(name) != "base64"
    ]
    if kind.lookup_key_marker_field and kind.lookup_key_marker_field not in fields:
        fields.append(kind.lookup_key_marker_field)
    found = lookup_existing(ctx.client, kind, candidates, fields)
    if found.empty:
        return todo
    todo = todo.copy()
    # Several records with one identity: adopt the oldest Id, deterministically, and each Id at most once.
    found = found.assign(_identity=record_identity(kind, found)).sort_values("Id")
    options_by_identity = dict(tuple(found.groupby("_identity", sort=False)))
    adopted_ids: set[str] = set()
    if kind.lookup_skips_owned:
        owned = ctx.ledger.load(kind.name, sorted(todo["campaign_id"].dropna().unique().tolist()))
        adopted_ids |= set(owned["salesforce_id"].dropna())
    unchanged_keys = []
    for index, identity in record_identity(kind, candidates).items():
        options = options_by_identity.get(identity)
        if options is None:
            continue
        if kind.lookup_key_marker_field:
            marker = (
                options[kind.lookup_key_marker_field]
                .astype(object)
                .where(options[kind.lookup_key_marker_field].notna(), "")
            )
            options = options[marker.astype(str).str.contains(str(todo.at[index, "sync_key"]), regex=False)]
        options = options[~options["Id"].isin(adopted_ids)]
        if options.empty:
            continue
        existing = options.iloc[0].to_dict()
        adopted_ids.add(existing["Id"])
        todo.at[index, "salesforce_id"] = existing["Id"]
        todo.at[index, "action"] = "update"
        same = all(
            same_value(wire_value(todo.at[index, name], types.get(name, "")), none_if_na(existing.get(name)))
            for name in salesforce_field_columns(todo)
            if name not in kind.create_only_fields and name not in kind.identity_fields
        )
        if same:
            unchanged_keys.append(index)
    if unchanged_keys:
        adopted = todo.loc[unchanged_keys]
        ctx.book.record(kind, adopted, adopted["salesforce_id"], "ok", None, None)
        outcome.add("unchanged", adopted)
        todo = todo.drop(index=unchanged_keys)
    return todo


def record_identity(kind: RecordKind, rows: pd.DataFrame) -> pd.Series:
    """A text identity per row from the kind's identity fields (case-insensitive, null as empty)."""
    parts = []
    for name in kind.identity_fields:
        column = rows[name] if name in rows.columns else pd.Series(pd.NA, index=rows.index)
        parts.append(column.astype(object).where(column.notna(), "").astype(str).str.lower())
    identity = parts[0]
    for part in parts[1:]:
        identity = identity + "\x1f" + part
    return identity


def lookup_existing(client: SalesforceClient, kind: RecordKind, rows: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Existing records that may match rows on the kind's lookup fields: a superset, cut down by ``record_identity``.

    One query per chunk of rows, not per parent or person: every lookup field is an IN list of the chunk's
    values (``ParentId IN (...) AND Title IN (...)``), chunked under the URI limit. The cross product such a
    query can return holds every wanted record, and ``record_identity`` keeps only exact matches. Rows are grouped
    by which lookup fields they hold (a CampaignMember has a ContactId or a LeadId): a field null in a group is
    left out of its WHERE, since ``IN`` never matches null. Rows without the first lookup field are not looked
    up (that field narrows the query to their parent or person). Fields in ``match_in_python`` are selected,
    never filtered on.
    """
    select = ", ".join(dict.fromkeys(["Id", *kind.identity_fields, *fields]))
    names = list(kind.lookup_fields)
    rows = rows[rows[names[0]].notna()]
    present = rows[names].notna()
    records: list[dict] = []
    for combination in present.drop_duplicates().itertuples(index=False):
        held = [name for name, has in zip(names, combination, strict=True) if has]
        group = rows[(present == list(combination)).all(axis=1)]
        where = " AND ".join(f"{name} IN {{}}" for name in held)
        template = f"SELECT {select} FROM {kind.sobject} WHERE {where}"
        for lists in in_list_chunks(group[held].astype(str), template):
            records += client.query_all(format_soql(template, *lists))
    if not records:
        return pd.DataFrame(columns=["Id", *kind.identity_fields])
    found = pd.DataFrame(records)
    for name in [*kind.identity_fields, *fields]:
        if name not in found.columns:
            found[name] = pd.NA
    return found


def number_new_records(ctx: SyncContext, kind: RecordKind, creates: pd.DataFrame) -> pd.DataFrame:
    """``creates`` with the kind's sequence field set: per parent, the numbers after its records in the org.

    Salesforce requires CampaignMemberStatus.SortOrder unique per Campaign, and the Campaign may hold statuses
    already (Sent and Responded, which it makes itself, or ones a user added): one query per chunk of parents
    reads their highest number, and the new records follow it in frame order. Called after ``adopt_existing``, so
    a record an earlier run made (whose answer was lost) is adopted, never numbered and created twice.
    """
    field, parent_field = kind.sequence_field, kind.parent_field
    assert field and parent_field, f"{kind.name}: a sequence field needs a parent field"
    creates = creates.copy()
    parents = creates[parent_field].astype(str)
    template = f"SELECT {parent_field}, {field} FROM {kind.sobject} WHERE {parent_field} IN {{}}"
    highest: dict[str, int] = {}
    for [chunk] in in_list_chunks(pd.DataFrame({parent_field: parents}), template):
        for record in ctx.client.query_all(format_soql(template, chunk)):
            number = record.get(field)
            if number is not None:
                parent = str(record[parent_field])
                highest[parent] = max(highest.get(parent, 0), int(number))
    # Salesforce Ids compare by their 15-character form (lookups answer 18), so the map is keyed on both.
    by_prefix = {parent[:15]: value for parent, value in highest.items()}
    start = parents.map(lambda parent: by_prefix.get(parent[:15], 0))
    creates[field] = (start + parents.groupby(parents, sort=False).cumcount() + 1).astype("int64")
    return creates
