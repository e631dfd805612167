"""Record-by-record comparison of two sandbox orgs for `bench.faults`: Ids and timestamps aside, same records?

Every record is reduced to what a user sees: system fields (Id, created/modified dates and users) and null fields
(unset, as a query reads them) dropped, and each reference to another record replaced by that record's identity (a
Lead or Contact by its email, a Campaign by its name, a file by its title). Records with a natural key (Campaign,
CampaignMember, CampaignMemberStatus, Lead, Contact) are paired by it and their fields compared; every other record
(Task, notes, files) is its own key, so a changed one counts as one lost and one unexpected.

Dates the org stamps itself from its own wall clock (``CampaignMember.FirstRespondedDate``: the day the member
first got a responded status) are compared by presence only: a faulted run and the clean run of the same input
done on two different days (the matrix takes hours, and a run may cross midnight UTC) set different days, and the
pipeline has no say in which. Whether the date is set (the member responded) is still compared. Every field the
pipeline writes is compared exactly: the sandbox Mailchimp clock stands still, so both runs read the same input.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

SYSTEM_FIELDS = {
    "Id",
    "attributes",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "LastReferencedDate",
    "LastViewedDate",
    "ContentModifiedDate",
    "LatestPublishedVersionId",
}
# Set by the org to the day of the write (wall clock): compared as set / not set.
ORG_STAMPED_DATES = {"FirstRespondedDate"}
ANCHORS = {"Lead": "Email", "Contact": "Email", "Campaign": "Name", "ContentDocument": "Title", "User": "Username"}
NATURAL_KEYS = {
    "Campaign": ("Name",),
    "CampaignMember": ("CampaignId", "LeadId", "ContactId"),
    "CampaignMemberStatus": ("CampaignId", "Label"),
    "Lead": ("Email",),
    "Contact": ("Email",),
}


def _label(sobject: str, fields: dict[str, Any]) -> str:
    value = fields.get(ANCHORS[sobject])
    return f"{sobject}:{str(value).lower() if sobject in ('Lead', 'Contact') else value}"


def snapshot(records: list[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, list[str]]]:
    """sobject -> key -> canonical records (JSON) having that key."""
    labels = {record_id: _label(sobject, fields) for sobject, record_id, fields in records if sobject in ANCHORS}
    kinds = {record_id: sobject for sobject, record_id, _ in records}
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for sobject, _record_id, fields in records:
        canonical: dict[str, Any] = {}
        for name, value in fields.items():
            if name in SYSTEM_FIELDS:
                continue
            if name in ORG_STAMPED_DATES:
                value = "<set>" if value else None
            if isinstance(value, str) and value in kinds:
                value = labels.get(value, f"<{kinds[value]}>")
            if value is None:
                # Salesforce has no "absent": a field never set reads as null. A record created through Bulk
                # (an empty cell sets nothing) and one created through Collections (a JSON null) are the same.
                continue
            canonical[name] = value
        text = json.dumps(canonical, sort_keys=True, default=str)
        natural = NATURAL_KEYS.get(sobject)
        key = json.dumps([canonical.get(name) for name in natural], default=str) if natural else text
        out[sobject][key].append(text)
    return {sobject: dict(keys) for sobject, keys in out.items()}


def compare(clean: dict[str, dict[str, list[str]]], faulted: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """lost / duplicated / unexpected / mismatched record counts, and which objects they are in."""
    totals: Counter[str] = Counter()
    by_object: dict[str, dict[str, int]] = {}
    for sobject in sorted(set(clean) | set(faulted)):
        want, have = clean.get(sobject, {}), faulted.get(sobject, {})
        counts: Counter[str] = Counter()
        for key in set(want) | set(have):
            expected, found = want.get(key, []), have.get(key, [])
            if not expected:
                counts["unexpected"] += len(found)
                continue
            counts["lost"] += max(0, len(expected) - len(found))
            counts["duplicated"] += max(0, len(found) - len(expected))
            if len(found) == len(expected) and sorted(found) != sorted(expected):
                counts["mismatched"] += 1
        totals.update(counts)
        nonzero = {k: v for k, v in counts.items() if v}
        if nonzero:
            by_object[sobject] = nonzero
    return {**{k: totals[k] for k in ("lost", "duplicated", "unexpected", "mismatched")}, "by_object": by_object}
