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

    def _page_sql(self, query: SoqlQuery, params: list[Any]) -> str:
        where = "sobject = %s"
        params.append(query.sobject.name)
        if query.where is not None:
            where += " AND " + compile_condition(query.sobject, query.where, params)
        return f"FROM {self.records_table} WHERE {where}"

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
            else:
                rendered[field_spec.name] = record.get(field_spec.name)
        return rendered

    def _fetch_page(self, query: SoqlQuery, start: int, size: int, version: str) -> list[dict[str, Any]]:
        params: list[Any] = []
        base = self._page_sql(query, params)
        order = compile_order(query.sobject, query.order_by)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT fields {base} ORDER BY {order} LIMIT %s OFFSET %s", [*params, size, start])
            rows = [r[0] for r in cursor.fetchall()]
        return [self.render_record(query.sobject, r, query.fields, version) for r in rows]

    def query(self, soql: str, version: str = API_VERSION, page_size: int = QUERY_PAGE_SIZE) -> dict[str, Any]:
        """Run a SOQL query: its first page, with a nextRecordsUrl when more rows remain."""
        query = parse_soql(soql)
        params: list[Any] = []
        base = self._page_sql(query, params)
        with self.cursor() as cursor:
            cursor.execute(f"SELECT count(*) {base}", params)
            matched = cursor.fetchone()[0]
        offset = query.offset or 0
        total = max(0, matched - offset)
        if query.limit is not None:
            total = min(total, query.limit)
        if query.count_only:
            return {"totalSize": total, "done": True, "records": []}
        records = self._fetch_page(query, offset, min(page_size, total), version) if total else []
        result: dict[str, Any] = {"totalSize": total, "done": total <= page_size, "records": records}
        if total > page_size:
            with self.cursor() as cursor:
                cursor.execute(f"SELECT nextval('\"{self.schema}\".record_number')")
                locator = make_record_id("01g", cursor.fetchone()[0])
                cursor.execute(
                    f'INSERT INTO "{self.schema}".query_cursors (locator, soql, total) VALUES (%s, %s, %s)',
                    (locator, soql, total),
                )
            result["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{page_size}"
        return result

    def query_more(
        self, locator_and_position: str, version: str = API_VERSION, page_size: int = QUERY_PAGE_SIZE
    ) -> dict[str, Any]:
        locator, _, position_text = locator_and_position.rpartition("-")
        with self.cursor() as cursor:
            cursor.execute(f'SELECT soql, total FROM "{self.schema}".query_cursors WHERE locator = %s', (locator,))
            row = cursor.fetchone()
        if row is None or not position_text.isdigit():
            raise RequestError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        soql, total = row
        position = int(position_text)
        query = parse_soql(soql)
        size = max(0, min(page_size, total - position))
        records = self._fetch_page(query, (query.offset or 0) + position, size, version)
        result: dict[str, Any] = {"totalSize": total, "done": position + size >= total, "records": records}
        if not result["done"]:
            result["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{position + size}"
        return result
