"""A dry run of one kind: what the next real run would create, update, leave alone and fail, with nothing written.

The counts follow the real run's path: records it would look up first are looked up (read-only queries), so one the
org has already is counted as it would be adopted (unchanged or updated); records the org makes itself with a new
parent (a Campaign's default CampaignMemberStatus values) are counted as adopted, not created; and a child waits
(fails) when its parent neither has a Salesforce Id nor would be created before it. A kind upserted by an external
ID is asked for the external ids of the records it would create (one read-only query per chunk of keys): one the
org holds already (a lost answer, a ledger rebuilt) is counted as the upsert's update, as the real run reports it.
"""

from __future__ import annotations

import pandas as pd

from campaign_pipeline.core.salesforce_records import salesforce_field_columns
from campaign_pipeline.salesforce.engine.context import SyncContext
from campaign_pipeline.salesforce.engine.encoding import none_if_na, same_value, wire_value
from campaign_pipeline.salesforce.engine.kinds import RecordKind
from campaign_pipeline.salesforce.engine.lookups import adopt_existing, lookup_existing, record_identity
from campaign_pipeline.salesforce.engine.report import KindOutcome


def missing_parent(kind: RecordKind, diffed: pd.DataFrame) -> pd.Series:
    """Rows whose parent has no Salesforce Id (yet)."""
    if not kind.parent_field:
        return pd.Series(False, index=diffed.index)
    return diffed[kind.parent_field].isna() & diffed["parent_key"].notna()


def preview_kind(
    ctx: SyncContext, kind: RecordKind, diffed: pd.DataFrame, parentless: pd.Series, outcome: KindOutcome
) -> None:
    """Count the kind's records as the real run would write them (``to_create``, ``to_update``, ``unchanged``,
    ``to_fail``) and list them in the change table; the ledger and the org are left as they are."""
    outcome.add("unchanged", diffed[diffed["action"] == "unchanged"])
    diffed, parentless = _parents_found_by_external_id(ctx, kind, diffed, parentless)
    rejected = diffed["action"] == "rejected"
    coming = ctx.planned_creates.get(kind.parent_kind or "", set())
    parent_coming = diffed["parent_key"].astype(str).isin(coming) if kind.parent_kind else False
    waits = parentless & ~parent_coming
    failing = diffed[rejected | waits]
    outcome.add("to_fail", failing)
    todo = diffed[diffed["action"].isin(["create", "update"]) & ~waits].copy()
    if not kind.external_id_field and not kind.versioned:
        lookup = (todo["action"] == "create") & (todo["needs_lookup"] | kind.lookup_before_create)
        if lookup.any():
            # Rows whose parent would be created first have no parent Id to look up by: nothing exists under it.
            todo = adopt_existing(ctx, kind, todo, lookup, outcome)
        if kind.org_made_with_parent:
            todo = _adopt_org_made(ctx, kind, todo, outcome)
    if kind.external_id_field:
        todo = _upserts_of_existing(ctx, kind, todo)
    creates = todo[todo["action"] == "create"]
    outcome.add("to_create", creates)
    outcome.add("to_update", todo[todo["action"] == "update"])
    ctx.planned_creates[kind.name] = set(creates["sync_key"].astype(str))
    ctx.book.note_changes(kind, pd.concat([todo, failing.assign(action="fail")]))


def _adopt_org_made(ctx: SyncContext, kind: RecordKind, todo: pd.DataFrame, outcome: KindOutcome) -> pd.DataFrame:
    """Creates under a parent this run would create that the org makes itself with that parent: adopted, so
    unchanged when the org's own values are ours, else updated."""
    assert kind.parent_field, f"{kind.name}: records made with a parent need a parent field"
    under_new_parent = (todo["action"] == "create") & todo[kind.parent_field].isna()
    if not under_new_parent.any():
        return todo
    made = pd.DataFrame([dict(record) for record in kind.org_made_with_parent])
    identity = [name for name in kind.identity_fields if name != kind.parent_field]
    own = kind.__class__(kind.name, kind.sobject, lookup_fields=tuple(identity))
    made_by_identity = made.assign(_identity=record_identity(own, made)).set_index("_identity")
    candidates = todo[under_new_parent]
    identities = record_identity(own, candidates)
    types = ctx.fields.types_of(kind)
    compared = [
        name
        for name in salesforce_field_columns(todo)
        if name not in kind.create_only_fields and name not in kind.identity_fields and name in made.columns
    ]
    todo = todo.copy()
    unchanged = []
    for index, identity_value in identities.items():
        if identity_value not in made_by_identity.index:
            continue
        existing = made_by_identity.loc[identity_value]
        todo.at[index, "action"] = "update"
        if all(
            same_value(wire_value(todo.at[index, name], types.get(name, "")), none_if_na(existing[name]))
            for name in compared
        ):
            unchanged.append(index)
    outcome.add("unchanged", todo.loc[unchanged])
    return todo.drop(index=unchanged)


def _upserts_of_existing(ctx: SyncContext, kind: RecordKind, todo: pd.DataFrame) -> pd.DataFrame:
    """Creates of a kind upserted by its external ID whose record the org holds already: the upsert updates them.

    Only the rows the ledger has no Id for are asked about, by their external ids (``lookup_existing``: one
    read-only query per chunk under the URI limit), and not those whose parent this run would create (nothing can
    hang on it yet); the Ids found are kept for the kind's children.
    """
    creates = (todo["action"] == "create") & ~missing_parent(kind, todo)
    if not creates.any():
        return todo
    found = lookup_existing(ctx.client, kind, todo[creates], [])
    if found.empty:
        return todo
    ids = found.assign(_identity=record_identity(kind, found)).sort_values("Id").drop_duplicates("_identity")
    id_of = ids.set_index("_identity")["Id"]
    found_ids = record_identity(kind, todo).map(id_of).where(creates)
    held = found_ids.notna()
    todo = todo.copy()
    todo.loc[held, "action"] = "update"
    todo.loc[held, "salesforce_id"] = found_ids[held]
    ctx.found_by_external_id[kind.name] = dict(
        zip(todo.loc[held, "sync_key"].astype(str), found_ids[held].astype(str), strict=True)
    )
    return todo


def _parents_found_by_external_id(
    ctx: SyncContext, kind: RecordKind, diffed: pd.DataFrame, parentless: pd.Series
) -> tuple[pd.DataFrame, pd.Series]:
    """Rows whose parent the ledger lacks but the org holds (found by its external ID): the real run upserts the
    parent first and fills its Id, so these rows take that Id and no longer wait."""
    found = ctx.found_by_external_id.get(kind.parent_kind or "", {})
    if not found or not kind.parent_field or not parentless.any():
        return diffed, parentless
    parent_ids = diffed["parent_key"].astype(str).map(found).where(parentless)
    filled = parent_ids.notna()
    if not filled.any():
        return diffed, parentless
    diffed = diffed.copy()
    diffed.loc[filled, kind.parent_field] = parent_ids[filled]
    return diffed, parentless & ~filled
