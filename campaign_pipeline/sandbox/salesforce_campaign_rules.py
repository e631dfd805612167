"""Campaign rules of the sandbox org: a member's Status from its Campaign's statuses, CampaignMemberStatus rules."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from campaign_pipeline.sandbox.salesforce_objects import ObjectSpec
from campaign_pipeline.sandbox.salesforce_state import SfError, WriteResult, record_keys

if TYPE_CHECKING:
    from campaign_pipeline.sandbox.salesforce_writes import WritingStore

# Salesforce: "A campaign hierarchy can support up to five levels."
MAX_HIERARCHY_LEVELS = 5


class CampaignRules:
    """Mixed into the record writer: the rules Salesforce applies to CampaignMember and CampaignMemberStatus."""

    store: WritingStore
    cursor: Any
    spec: ObjectSpec

    def _statuses_for(self, campaign_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        self.cursor.execute(
            f"""SELECT fields FROM {self.store.records_table}
                WHERE sobject = 'CampaignMemberStatus' AND fields->>'CampaignId' = ANY(%s)""",
            (list(set(campaign_ids)),),
        )
        by_campaign: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (fields_,) in self.cursor.fetchall():
            by_campaign[fields_["CampaignId"]].append(fields_)
        return by_campaign

    def _campaign_member_rules(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        live = [(r, f, t) for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None]
        statuses = self._statuses_for(f["CampaignId"] for _, f, _ in live)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        new_keys: dict[str, WriteResult] = {}
        for result, final, target in live:
            if final.get("ContactId") and final.get("LeadId") and target is None:
                # Salesforce keeps only the Contact when a new member names both.
                final["LeadId"] = None
            labels = {s["Label"].lower(): s for s in statuses.get(final["CampaignId"], [])}
            status = final.get("Status")
            if status in (None, ""):
                default = next((s for s in labels.values() if s.get("IsDefault")), None)
                chosen = default
            else:
                chosen = labels.get(str(status).lower())
                if chosen is None:
                    result.errors.append(
                        SfError(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"Status: bad value for restricted picklist field: {status}",
                            ("Status",),
                        )
                    )
                    continue
            if chosen is not None:
                final["Status"] = chosen["Label"]
                final["HasResponded"] = bool(chosen.get("HasResponded"))
                if final["HasResponded"] and not final.get("FirstRespondedDate"):
                    final["FirstRespondedDate"] = today
            if target is None:
                _, member_key = record_keys(self.spec, final)
                assert member_key is not None
                if member_key in new_keys:
                    result.errors.append(SfError("DUPLICATE_VALUE", "Already a campaign member."))
                else:
                    new_keys[member_key] = result
        if new_keys:
            self.cursor.execute(
                f"SELECT member_key FROM {self.store.records_table} WHERE sobject = 'CampaignMember' AND member_key = ANY(%s)",
                (list(new_keys),),
            )
            for (member_key,) in self.cursor.fetchall():
                new_keys[member_key].errors.append(SfError("DUPLICATE_VALUE", "Already a campaign member."))

    def _member_status_rules(
        self, results: list[WriteResult], finals: list[dict[str, Any] | None], targets: list[dict[str, Any] | None]
    ) -> None:
        live = [(r, f, t) for r, f, t in zip(results, finals, targets, strict=True) if not r.errors and f is not None]
        statuses = self._statuses_for(f["CampaignId"] for _, f, _ in live)
        for result, final, target in live:
            siblings = [s for s in statuses[final["CampaignId"]] if s["Id"] != final.get("Id")]
            label_clash = next((s for s in siblings if s["Label"].lower() == final["Label"].lower()), None)
            if label_clash is not None:
                result.errors.append(
                    SfError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: Label duplicates value on record with id: {label_clash.get('Id', '')}",
                        ("Label",),
                    )
                )
                continue
            if final.get("SortOrder") is None:
                final["SortOrder"] = max((int(s.get("SortOrder") or 0) for s in siblings), default=0) + 1
            order_clash = next((s for s in siblings if s.get("SortOrder") == final["SortOrder"]), None)
            if order_clash is not None:
                result.errors.append(
                    SfError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: SortOrder duplicates value on record with id: {order_clash.get('Id', '')}",
                        ("SortOrder",),
                    )
                )
                continue
            # Later rows of the same request see this one, so their defaults and checks stay right.
            statuses[final["CampaignId"]].append(
                final if target is not None else {**final, "Id": f"pending-{id(final)}"}
            )
        self._keep_default_and_responded(live, statuses)

    def _keep_default_and_responded(
        self,
        live: list[tuple[WriteResult, dict[str, Any], dict[str, Any] | None]],
        statuses: dict[str, list[dict[str, Any]]],
    ) -> None:
        """Refuse updates that would leave a Campaign without a default or without a responded status.

        Salesforce requires both on every Campaign (API 39.0 on); setting another status as default
        in the same request is how the default moves, and that stays allowed.
        """
        picture: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for campaign_id, rows in statuses.items():
            for row in rows:
                picture[campaign_id][row["Id"]] = row  # later rows (this request's) replace stored ones
        for result, final, target in live:
            if result.errors or target is None:
                continue
            campaign = picture[final["CampaignId"]].values()
            if target.get("IsDefault") and not final.get("IsDefault") and not any(s.get("IsDefault") for s in campaign):
                result.errors.append(
                    SfError(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "A campaign needs a default member status: make another status the default instead",
                        ("IsDefault",),
                    )
                )
            elif (
                target.get("HasResponded")
                and not final.get("HasResponded")
                and not any(s.get("HasResponded") for s in campaign)
            ):
                result.errors.append(
                    SfError(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "A campaign needs at least one member status marked Responded",
                        ("HasResponded",),
                    )
                )

    def _campaign_hierarchy_rules(self, results: list[WriteResult], finals: list[dict[str, Any] | None]) -> None:
        """Refuse a ParentId that makes a Campaign its own ancestor, or a hierarchy deeper than five levels.

        Salesforce keeps the campaign hierarchy a tree of at most five levels; the parent chain is walked with
        this request's values in place of the stored ones (a request may move several Campaigns at once).
        """
        live = [(r, f) for r, f in zip(results, finals, strict=True) if not r.errors and f is not None]
        if not any(f.get("ParentId") for _, f in live):
            return
        # New records have no Id yet: nothing stored can point at them, so they can only be a chain's start.
        parents = {f["Id"]: f.get("ParentId") for _, f in live if f.get("Id")}

        def parent_of(campaign_id: str) -> str | None:
            if campaign_id not in parents:
                self.cursor.execute(
                    f"SELECT fields->>'ParentId' FROM {self.store.records_table} WHERE id = %s", (campaign_id,)
                )
                row = self.cursor.fetchone()
                parents[campaign_id] = row[0] if row else None
            return parents[campaign_id]

        for result, final in live:
            levels, cursor_id = 1, final.get("ParentId")
            while cursor_id and levels <= MAX_HIERARCHY_LEVELS:
                if cursor_id == final.get("Id"):
                    result.errors.append(
                        SfError(
                            "FIELD_INTEGRITY_EXCEPTION",
                            "Parent Campaign: a campaign can't be its own parent or the parent of its ancestors",
                            ("ParentId",),
                        )
                    )
                    break
                levels += 1
                cursor_id = parent_of(cursor_id)
            else:
                if levels > MAX_HIERARCHY_LEVELS:
                    result.errors.append(
                        SfError(
                            "FIELD_INTEGRITY_EXCEPTION",
                            f"Parent Campaign: a campaign hierarchy can have at most {MAX_HIERARCHY_LEVELS} levels",
                            ("ParentId",),
                        )
                    )

    def _single_default(self, defaults: list[dict[str, Any]]) -> None:
        """Keep one default status per Campaign: the newest one set wins, as in Salesforce."""
        for final in defaults:
            self.cursor.execute(
                f"""UPDATE {self.store.records_table} SET fields = fields || '{{"IsDefault": false}}'::jsonb
                    WHERE sobject = 'CampaignMemberStatus' AND fields->>'CampaignId' = %s AND id <> %s
                    AND (fields->>'IsDefault')::boolean""",
                (final["CampaignId"], final["Id"]),
            )
