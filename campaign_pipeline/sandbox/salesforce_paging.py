"""SOQL over the sandbox store: a query's first page, and queryMore through stored locators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from campaign_pipeline.sandbox.salesforce_objects import API_VERSION, FieldSpec, ObjectSpec, make_record_id
from campaign_pipeline.sandbox.salesforce_soql import SoqlQuery, compile_condition, compile_order, parse_soql
from campaign_pipeline.sandbox.salesforce_state import RequestError, StoreBase

QUERY_PAGE_SIZE = 2000


class QueryingStore(StoreBase):
    """SOQL reads: pages of QUERY_PAGE_SIZE records, locators kept in the query_cursors table."""

    def _page_sql(self, query: SoqlQuery, params: list[Any], *, include_deleted: bool = False) -> str:
        where = "sobject = %s"
        params.append(query.sobject.name)
        if query.where is not None:
            where += " AND " + compile_condition(query.sobject, query.where, params)
        source = self.records_table
        if include_deleted:
            # queryAll: the recycle bin's records too, each carrying IsDeleted = true.
            source = f"(SELECT * FROM {self.records_table} UNION ALL SELECT * FROM {self.deleted_table}) AS everything"
        return f"FROM {source} WHERE {where}"

    @staticmethod
    def render_record(
        spec: ObjectSpec, record: dict[str, Any], fields: Sequence[FieldSpec], version: str
    ) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "attributes": {"type": spec.name, "url": f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}"}
        }
        for field_spec in fields:
            if field_spec.type == "base64" and record.get(field_spec.name) is not None:
                # REST returns a blob URL for base64 fields, not the content.
                rendered[field_spec.name] = (
                    f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}/{field_spec.name}"
                )
            elif field_spec.name == "IsDeleted":
                rendered[field_spec.name] = bool(record.get("IsDeleted", False))
            elif field_spec.name == "SystemModstamp":
                # Records stored before the field existed carry their last modification.
                rendered[field_spec.name] = record.get("SystemModstamp") or record.get("LastModifiedDate")
            else:
                rendered[field_spec.name] = record.get(field_spec.name)
        return rendered

    def _fetch_page(
        self, query: SoqlQuery, start: int, size: int, version: str, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        params: list[Any] = []
        base = self._page_sql(query, params, include_deleted=include_deleted)
        order = compile_order(query.sobject, query.order_by)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT fields {base} ORDER BY {order} LIMIT %s OFFSET %s", [*params, size, start])
            rows = [r[0] for r in cursor.fetchall()]
        return [self.render_record(query.sobject, r, query.fields, version) for r in rows]

    def query(
        self, soql: str, version: str = API_VERSION, page_size: int = QUERY_PAGE_SIZE, *, include_deleted: bool = False
    ) -> dict[str, Any]:
        """Run a SOQL query (queryAll with ``include_deleted``): its first page, with a nextRecordsUrl when more remain."""
        query = parse_soql(soql, self.objects)
        params: list[Any] = []
        base = self._page_sql(query, params, include_deleted=include_deleted)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT count(*) {base}", params)
            matched = cursor.fetchone()[0]
        offset = query.offset or 0
        total = max(0, matched - offset)
        if query.limit is not None:
            total = min(total, query.limit)
        if query.count_only:
            return {"totalSize": total, "done": True, "records": []}
        records = (
            self._fetch_page(query, offset, min(page_size, total), version, include_deleted=include_deleted)
            if total
            else []
        )
        result: dict[str, Any] = {"totalSize": total, "done": total <= page_size, "records": records}
        if total > page_size:
            with self.cursor() as cursor:
                cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number')")
                locator = make_record_id("01g", cursor.fetchone()[0])
                cursor.execute(
                    f'INSERT INTO "{self.schema}".query_cursors (locator, soql, total, include_deleted) '
                    "VALUES (%s, %s, %s, %s)",
                    (locator, soql, total, include_deleted),
                )
            resource = "queryAll" if include_deleted else "query"
            result["nextRecordsUrl"] = f"/services/data/v{version}/{resource}/{locator}-{page_size}"
        return result

    def query_more(
        self, locator_and_position: str, version: str = API_VERSION, page_size: int = QUERY_PAGE_SIZE
    ) -> dict[str, Any]:
        locator, _, position_text = locator_and_position.rpartition("-")
        with self.cursor() as cursor:
            cursor.execute(
                f'SELECT soql, total, include_deleted FROM "{self.schema}".query_cursors WHERE locator = %s',
                (locator,),
            )
            row = cursor.fetchone()
        if row is None or not position_text.isdigit():
            raise RequestError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        soql, total, include_deleted = row
        position = int(position_text)
        query = parse_soql(soql, self.objects)
        size = max(0, min(page_size, total - position))
        records = self._fetch_page(
            query, (query.offset or 0) + position, size, version, include_deleted=include_deleted
        )
        result: dict[str, Any] = {"totalSize": total, "done": position + size >= total, "records": records}
        if not result["done"]:
            resource = "queryAll" if include_deleted else "query"
            result["nextRecordsUrl"] = f"/services/data/v{version}/{resource}/{locator}-{position + size}"
        return result
