"""Request routing of the sandbox org's REST API: sObjects, SOQL, sObject Collections, Bulk API 2.0 ingest, limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from campaign_pipeline.sandbox.salesforce_objects import API_VERSION, normalize_id, object_of_id, object_spec
from campaign_pipeline.sandbox.salesforce_store import RequestError, SalesforceStore, SfError, WriteResult

MAX_COLLECTION_RECORDS = 200
# A JSON (non-multipart) REST request is at most 50 MB of text, i.e. 37.5 MB of data in base64 (REST API guide,
# "Insert or Update Blob Data"), per request: a whole sObject Collections call, or one record's. A real org answers
# a bigger body with 400 JSON_PARSER_ERROR "Maximum size of request reached. Maximum size of request is 52428800
# bytes." (as reported from live orgs, simple-salesforce issue 195 and the Mobile SDK's issue 3575).
MAX_JSON_REQUEST_BYTES = 50 * 1024 * 1024
REQUEST_TOO_LARGE = f"Maximum size of request reached. Maximum size of request is {MAX_JSON_REQUEST_BYTES} bytes."
# sObject Collections process a request in chunks (runs of one type) and take at most this many.
MAX_COLLECTION_CHUNKS = 10


class ApiResponse:
    def __init__(
        self,
        status: int,
        body: Any = None,
        content_type: str = "application/json;charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


def error_response(status: int, code: str, message: str, fields: tuple[str, ...] = ()) -> ApiResponse:
    return ApiResponse(status, [SfError(code, message, fields).rest()])


class SalesforceRoutes:
    """The REST resources under /services/data/vXX.X/, mixed into the org; `_dispatch` (the org) checks sessions."""

    store: SalesforceStore
    daily_api_limit: int

    def _lock_fault(self) -> Callable[[], bool] | None:
        raise NotImplementedError

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8")) if body else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, "JSON_PARSER_ERROR", f"The request body is not valid JSON: {exc}") from exc

    def _route(
        self,
        method: str,
        version: str,
        segments: list[str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        used: int,
    ) -> ApiResponse:
        head = segments[0] if segments else ""
        if head == "":
            return ApiResponse(
                200,
                {
                    name: f"/services/data/v{version}/{name}"
                    for name in ("sobjects", "query", "limits", "composite", "jobs")
                },
            )
        if (
            head in ("sobjects", "composite")
            and method in ("POST", "PATCH", "PUT")
            and len(body) > MAX_JSON_REQUEST_BYTES
        ):
            # Nothing of the request is written, whatever it held.
            return error_response(400, "JSON_PARSER_ERROR", REQUEST_TOO_LARGE)
        if head == "limits" and method == "GET":
            return self._limits(used)
        if head in ("query", "queryAll") and method == "GET":
            if len(segments) == 2:
                return ApiResponse(200, self.store.query_more(segments[1], version))
            soql = (query.get("q") or [""])[0]
            if not soql.strip():
                return error_response(400, "MALFORMED_QUERY", "A query string (q) is required")
            return ApiResponse(200, self.store.query(soql, version, include_deleted=head == "queryAll"))
        if head == "sobjects":
            return self._sobjects(method, version, segments[1:], query, body)
        if head == "composite" and segments[1:2] == ["sobjects"]:
            return self._collections(method, segments[2:], query, body)
        if head == "jobs" and segments[1:2] == ["query"]:
            return self._bulk_query(method, version, segments[2:], query, body)
        if head == "jobs" and segments[1:2] == ["ingest"]:
            return self._bulk(method, version, segments[2:], body)
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")

    def _limits(self, used: int) -> ApiResponse:
        remaining = max(0, self.daily_api_limit - used)
        return ApiResponse(
            200,
            {
                "DailyApiRequests": {"Max": self.daily_api_limit, "Remaining": remaining},
                "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000},
                "DailyBulkV2QueryJobs": {"Max": 10_000, "Remaining": 10_000},
                "DataStorageMB": {"Max": 1_024, "Remaining": 1_024},
            },
        )

    # --- sObject resources -------------------------------------------------------------------------

    @staticmethod
    def _single_failure(result: WriteResult) -> ApiResponse:
        if result.errors and result.errors[0].status_code in ("ENTITY_IS_DELETED", "NOT_FOUND"):
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        return ApiResponse(400, [e.rest() for e in result.errors])

    def _sobjects(
        self, method: str, version: str, segments: list[str], query: dict[str, list[str]], body: bytes
    ) -> ApiResponse:
        if not segments:
            if method != "GET":
                return error_response(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET")
            return ApiResponse(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [
                        {k: v for k, v in spec.describe().items() if k != "fields"}
                        for spec in self.store.objects.values()
                    ],
                },
            )
        spec = object_spec(segments[0], self.store.objects)
        if spec is None:
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        rest = segments[1:]
        if not rest:
            if method == "GET":
                return ApiResponse(
                    200,
                    {"objectDescribe": {k: v for k, v in spec.describe().items() if k != "fields"}, "recentItems": []},
                )
            if method == "POST":
                record = self._json(body)
                if not isinstance(record, dict):
                    raise RequestError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
                [result] = self.store.write(spec.name, "insert", [record], lock_fault=self._lock_fault())
                if not result.success:
                    return self._single_failure(result)
                return ApiResponse(201, {"id": result.id, "success": True, "errors": []})
            return error_response(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST"
            )
        if rest == ["describe"] and method == "GET":
            return ApiResponse(200, spec.describe())
        if len(rest) == 1:
            record_id = normalize_id(rest[0])
            if record_id is None or record_id[:3] != spec.key_prefix:
                return error_response(
                    404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {rest[0]}"
                )
            return self._one_record(method, version, spec.name, record_id, query, body)
        if len(rest) == 2:
            record_id = normalize_id(rest[0])
            blob_field = spec.field(rest[1])
            if record_id is not None and blob_field is not None and blob_field.type == "base64" and method == "GET":
                record = self.store.get(spec.name, record_id)
                if record is None or record.get(blob_field.name) is None:
                    return error_response(404, "NOT_FOUND", "The requested resource does not exist")
                return ApiResponse(
                    200,
                    base64.b64decode(record[blob_field.name]),
                    content_type=record.get("ContentType") or "application/octet-stream",
                )
            return self._by_external_id(method, version, spec.name, rest[0], rest[1], body)
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")

    def _render_full(
        self, sobject: str, record: dict[str, Any], version: str, wanted: list[str] | None
    ) -> dict[str, Any]:
        spec = self.store.objects[sobject]
        if wanted:
            fields = []
            for name in wanted:
                field_spec = spec.field(name)
                if field_spec is None:
                    raise RequestError(
                        400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}", (name,)
                    )
                fields.append(field_spec)
        else:
            fields = list(spec.fields)
        return SalesforceStore.render_record(spec, record, fields, version)

    def _one_record(
        self, method: str, version: str, sobject: str, record_id: str, query: dict[str, list[str]], body: bytes
    ) -> ApiResponse:
        if method == "GET":
            record = self.store.get(sobject, record_id)
            if record is None:
                return error_response(404, "NOT_FOUND", "The requested resource does not exist")
            wanted = [f for f in (query.get("fields") or [""])[0].split(",") if f]
            return ApiResponse(200, self._render_full(sobject, record, version, wanted))
        if method == "PATCH":
            changes = self._json(body)
            if not isinstance(changes, dict):
                raise RequestError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            [result] = self.store.write(
                sobject, "update", [{**changes, "Id": record_id}], lock_fault=self._lock_fault()
            )
            return ApiResponse(204) if result.success else self._single_failure(result)
        if method == "DELETE":
            if self.store.get(sobject, record_id) is None:
                return error_response(404, "NOT_FOUND", "The requested resource does not exist")
            [result] = self.store.delete([record_id])
            return ApiResponse(204) if result.success else self._single_failure(result)
        return error_response(
            405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE"
        )

    def _by_external_id(
        self, method: str, version: str, sobject: str, field_name: str, value: str, body: bytes
    ) -> ApiResponse:
        spec = self.store.objects[sobject]
        field_spec = spec.field(field_name)
        if field_spec is None or not (field_spec.external_id or field_spec.name == "Id" or field_spec.type == "email"):
            return error_response(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        if method == "PATCH":
            if not field_spec.external_id and field_spec.name != "Id":
                return error_response(
                    400, "INVALID_FIELD", f"{field_spec.name} is not an External ID or indexed field for {sobject}"
                )
            changes = self._json(body)
            if not isinstance(changes, dict):
                raise RequestError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            row = {**{k: v for k, v in changes.items() if k.lower() != field_spec.name.lower()}, field_spec.name: value}
            [result] = self.store.write(
                sobject, "upsert", [row], external_id_field=field_spec.name, lock_fault=self._lock_fault()
            )
            if not result.success:
                return self._single_failure(result)
            return ApiResponse(
                201 if result.created else 200,
                {"id": result.id, "success": True, "errors": [], "created": result.created},
            )
        matches = self.store.find_by_external_id(spec, field_spec.name, value)
        if not matches:
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        if len(matches) > 1:
            return ApiResponse(300, [f"/services/data/v{version}/sobjects/{sobject}/{m}" for m in matches])
        if method == "GET":
            record = self.store.get(sobject, matches[0])
            assert record is not None
            return ApiResponse(200, self._render_full(sobject, record, version, None))
        if method == "DELETE":
            [result] = self.store.delete(matches)
            return ApiResponse(204) if result.success else self._single_failure(result)
        return error_response(
            405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE"
        )

    # --- sObject Collections -----------------------------------------------------------------------

    def _collections(self, method: str, segments: list[str], query: dict[str, list[str]], body: bytes) -> ApiResponse:
        if method == "DELETE" and not segments:
            ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
            if len(ids) > MAX_COLLECTION_RECORDS:
                return self._too_many()
            all_or_none = (query.get("allOrNone") or ["false"])[0].lower() == "true"
            results = self.store.delete(ids, all_or_none=all_or_none)
            return ApiResponse(200, [r.collection(False) for r in results])
        if method == "GET" and len(segments) == 1:
            spec = object_spec(segments[0], self.store.objects)
            if spec is None:
                return error_response(404, "NOT_FOUND", "The requested resource does not exist")
            ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
            wanted = [f for f in (query.get("fields") or [""])[0].split(",") if f]
            if len(ids) > 2000:
                return self._too_many()
            out: list[Any] = []
            for raw in ids:
                record_id = normalize_id(raw)
                record = self.store.get(spec.name, record_id) if record_id else None
                out.append(self._render_full(spec.name, record, API_VERSION, wanted) if record else None)
            return ApiResponse(200, out)
        request = self._json(body)
        if not isinstance(request, dict) or not isinstance(request.get("records"), list):
            raise RequestError(400, "JSON_PARSER_ERROR", "The request body must be an object with a records list")
        records = request["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            return self._too_many()
        all_or_none = bool(request.get("allOrNone", False))
        if method == "POST" and not segments:
            return self._collection_write("insert", records, all_or_none, None, None)
        if method == "PATCH" and not segments:
            return self._collection_write("update", records, all_or_none, None, None)
        if method == "PATCH" and len(segments) == 2:
            spec = object_spec(segments[0], self.store.objects)
            if spec is None:
                return error_response(404, "NOT_FOUND", "The requested resource does not exist")
            return self._collection_write("upsert", records, all_or_none, spec.name, segments[1])
        return error_response(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed here")

    @staticmethod
    def _too_many() -> ApiResponse:
        return error_response(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call",
        )

    def _collection_write(
        self, operation: str, records: list[Any], all_or_none: bool, sobject: str | None, external_field: str | None
    ) -> ApiResponse:
        """Write records in chunks, as Salesforce does: each run of consecutive records of one type is a chunk.

        Results keep request order. More than MAX_COLLECTION_CHUNKS chunks refuse the whole request.
        """
        chunks: list[tuple[str, list[int]]] = []
        results: list[WriteResult | None] = [None] * len(records)
        for index, record in enumerate(records):
            type_name = sobject
            if isinstance(record, dict):
                declared = (
                    (record.get("attributes") or {}).get("type") if isinstance(record.get("attributes"), dict) else None
                )
                if declared:
                    type_name = declared
                elif operation == "update" and isinstance(record.get("Id"), str):
                    normalized = normalize_id(record["Id"])
                    type_name = object_of_id(normalized) if normalized else None
            spec = object_spec(type_name or "", self.store.objects)
            if spec is None:
                results[index] = WriteResult(errors=[SfError("INVALID_TYPE", "Must send a concrete entity type.")])
                continue
            if chunks and chunks[-1][0] == spec.name:
                chunks[-1][1].append(index)
            else:
                chunks.append((spec.name, [index]))
        if len(chunks) > MAX_COLLECTION_CHUNKS:
            return error_response(
                400,
                "EXCEEDED_MAX_TYPES_LIMIT",
                f"Cannot have more than {MAX_COLLECTION_CHUNKS} chunks in a single operation; this one has "
                f"{len(chunks)} (each run of consecutive records of one type is a chunk). Please rearrange the data "
                "to reduce chunking.",
            )
        if all_or_none and any(r is not None for r in results):
            return self._collection_response(results, all_or_none, operation == "upsert")
        written = self.store.write_groups(
            [(name, [records[i] for i in indices]) for name, indices in chunks],
            operation,
            external_id_field=external_field,
            all_or_none=all_or_none,
            lock_fault=self._lock_fault(),
        )
        for (_, indices), chunk_results in zip(chunks, written, strict=True):
            for index, result in zip(indices, chunk_results, strict=True):
                results[index] = result
        return self._collection_response(results, all_or_none, operation == "upsert")

    @staticmethod
    def _collection_response(results: list[WriteResult | None], all_or_none: bool, with_created: bool) -> ApiResponse:
        filled = [r or WriteResult() for r in results]
        if all_or_none and any(r.errors for r in filled):
            for result in filled:
                if result.success or not result.errors:
                    result.success = False
                    result.id = None
                    result.errors = [
                        SfError(
                            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "Record rolled back because not all records were valid and the request was using AllOrNone header",
                        )
                    ]
        return ApiResponse(200, [r.collection(with_created) for r in filled])

    # --- Bulk API 2.0 ingest -----------------------------------------------------------------------

    def _bulk(self, method: str, version: str, segments: list[str], body: bytes) -> ApiResponse:
        if not segments:
            if method == "POST":
                request = self._json(body)
                if not isinstance(request, dict):
                    raise RequestError(400, "JSON_PARSER_ERROR", "The job request must be a JSON object")
                return ApiResponse(200, self.store.create_job(request, version))
            if method == "GET":
                jobs = self.store.list_jobs()
                return ApiResponse(200, {"done": True, "records": jobs, "nextRecordsUrl": None})
            return error_response(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST"
            )
        job_id = segments[0]
        if len(segments) == 1:
            if method == "GET":
                return ApiResponse(200, self.store.job_info(job_id))
            if method == "PATCH":
                request = self._json(body)
                state = request.get("state") if isinstance(request, dict) else None
                return ApiResponse(200, self.store.set_job_state(job_id, str(state), self._lock_fault()))
            if method == "DELETE":
                self.store.delete_job(job_id)
                return ApiResponse(204)
        if len(segments) == 2:
            if segments[1] == "batches" and method == "PUT":
                self.store.upload_job_data(job_id, body.decode("utf-8-sig"))
                return ApiResponse(201)
            if segments[1] in ("successfulResults", "failedResults", "unprocessedrecords") and method == "GET":
                return ApiResponse(200, self.store.job_results(job_id, segments[1]), content_type="text/csv")
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")

    # --- Bulk API 2.0 query ------------------------------------------------------------------------

    def _bulk_query(
        self, method: str, version: str, segments: list[str], query: dict[str, list[str]], body: bytes
    ) -> ApiResponse:
        if not segments and method == "POST":
            request = self._json(body)
            if not isinstance(request, dict):
                raise RequestError(400, "JSON_PARSER_ERROR", "The job request must be a JSON object")
            return ApiResponse(200, self.store.create_query_job(request, version))
        if len(segments) == 1 and method == "GET":
            return ApiResponse(200, self.store.query_job_info(segments[0]))
        if len(segments) == 1 and method == "DELETE":
            self.store.delete_query_job(segments[0])
            return ApiResponse(204)
        if len(segments) == 2 and segments[1] == "results" and method == "GET":
            locator_values, size_values = query.get("locator") or [], query.get("maxRecords") or []
            text, locator, count = self.store.query_job_results(
                segments[0], locator_values[0] if locator_values else None, size_values[0] if size_values else None
            )
            return ApiResponse(
                200,
                text,
                content_type="text/csv",
                headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)},
            )
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")
