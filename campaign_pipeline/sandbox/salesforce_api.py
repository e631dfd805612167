"""The sandbox Salesforce org: an HTTPS emulator of the REST API parts the pipeline uses, state in Postgres."""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import sqlalchemy as sa

from campaign_pipeline.sandbox.salesforce_objects import (
    API_USER_ID,
    API_VERSION,
    OBJECTS,
    ORG_ID,
    normalize_id,
    object_of_id,
    object_spec,
)
from campaign_pipeline.sandbox.salesforce_seed import SeedSummary, seed_people
from campaign_pipeline.sandbox.salesforce_soql import SoqlError
from campaign_pipeline.sandbox.salesforce_store import RequestError, SalesforceStore, SfError, WriteResult

logger = logging.getLogger(__name__)

MAX_URI_LENGTH = 16_384
MAX_COLLECTION_RECORDS = 200
DEFAULT_USERNAME = "sandbox@campaign-pipeline.invalid"
DEFAULT_PASSWORD = "sandbox-password"

__all__ = ["SalesforceFaults", "SalesforceSandbox", "SeedSummary", "seed_people"]


@dataclass
class SalesforceFaults:
    """Faults the org injects; mutable while it runs (tests flip them between calls).

    Rates are shares of records (lock errors) or of API requests (5xx) drawn from a
    random generator seeded with `seed`, so a run is repeatable. `fail_next_requests`
    makes exactly the next N API requests answer 503, for deterministic retry tests.
    """

    lock_error_rate: float = 0.0
    request_limit_exceeded: bool = False
    rate_5xx: float = 0.0
    latency_ms: int = 0
    fail_next_requests: int = 0
    # When > 0: counts down on every API request; at zero the org's current session expires
    # (that request already gets 401 INVALID_SESSION_ID, and org.session_id holds a fresh one).
    expire_session_after: int = 0
    # The next N non-GET requests are carried out, then answered 504 as if the answer was lost.
    lose_next_answers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lock_error_rate", "rate_5xx"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"SalesforceFaults.{name} must be a share between 0 and 1, got {rate}")
        for name in ("latency_ms", "fail_next_requests", "expire_session_after", "lose_next_answers"):
            if getattr(self, name) < 0:
                raise ValueError(f"SalesforceFaults.{name} must not be negative, got {getattr(self, name)}")


class _ApiResponse:
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


def _error_response(status: int, code: str, message: str, fields: tuple[str, ...] = ()) -> _ApiResponse:
    return _ApiResponse(status, [SfError(code, message, fields).rest()])


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        org: SalesforceSandbox,
    ) -> None:
        super().__init__(address, handler)
        self.tls_context = context
        self.org = org

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the request's own thread, so one slow client cannot stall accept().
        try:
            # Without TCP_NODELAY the header and body writes of a response meet the client's
            # delayed ACK and every call takes ~40 ms more than it should.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls_socket = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls_socket, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        org = self.server.org
        try:
            response = org._dispatch(method, self.path, dict(self.headers.items()), body)
        except Exception:  # an emulator bug must still answer like Salesforce does
            logger.exception("sandbox Salesforce failed on %s %s", method, urlsplit(self.path).path)
            response = _error_response(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred in the sandbox org")
        payload = response.payload()
        self.send_response(response.status)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and response.status != 204:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class SalesforceSandbox:
    """A sandbox org served over HTTPS on 127.0.0.1; use as a context manager.

    Several instances (or processes) on one engine and schema are one org: records,
    sessions, API usage, query cursors and Bulk jobs all live in Postgres. What stays in
    the instance is its own session token, its call log and its fault settings.

    Resources under /services/data/v62.0/: sobjects (describeGlobal), sobjects/{Type} (POST
    create), sobjects/{Type}/describe, sobjects/{Type}/{Id} (GET/PATCH/DELETE),
    sobjects/{Type}/{ExternalIdField}/{value} (GET, PATCH upsert, DELETE),
    sobjects/Attachment/{Id}/Body, query?q= and query/{locator}, composite/sobjects (POST
    create, PATCH update, DELETE ?ids=, GET /{Type}?ids=), composite/sobjects/{Type}/{Field}
    (PATCH upsert), jobs/ingest (Bulk API 2.0), limits. Outside it: /services/oauth2/token
    (grant_type=password with `username` and DEFAULT_PASSWORD, optionally + a token suffix).
    """

    def __init__(
        self,
        engine: sa.Engine | None = None,
        schema: str = "sandbox_salesforce",
        faults: SalesforceFaults | None = None,
        daily_api_limit: int = 15_000,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        port: int = 0,
    ) -> None:
        if engine is None:
            from campaign_pipeline.storage.database import get_engine

            engine = get_engine()
        self.store = SalesforceStore(engine, schema)
        self.faults = faults or SalesforceFaults()
        self.daily_api_limit = daily_api_limit
        self.username = username
        self._password = password
        self.api_version = API_VERSION
        self.call_log: list[tuple[str, str, str]] = []
        self._requested_port = port
        self._rng = random.Random(self.faults.seed)
        self._rng_faults: SalesforceFaults | None = self.faults
        self._rng_lock = threading.Lock()
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None
        self.ca_path = ""
        self.session_id = ""
        self.instance_url = ""

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SalesforceSandbox:
        import trustme

        self.store.ensure_schema()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="sandbox-salesforce-"))
        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        ca_file = self._tmpdir / "sandbox-ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        self.ca_path = str(ca_file)
        self._server = _TlsServer(("127.0.0.1", self._requested_port), _Handler, context, self)
        port = self._server.server_address[1]
        self.instance_url = f"https://127.0.0.1:{port}"
        self.session_id = self.store.new_session()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"sandbox-salesforce-{port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> SalesforceSandbox:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- helpers for tests, benchmarks and the resource --------------------------------------------

    def requests_session(self) -> requests.Session:
        """A requests.Session that trusts the org's throwaway CA."""
        session = requests.Session()
        session.verify = self.ca_path
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override session.verify when it
        # trusts the environment; the org is on loopback, so nothing else from there is needed.
        session.trust_env = False
        return session

    def client(self) -> Any:
        """A simple-salesforce client on this org's current session."""
        from simple_salesforce import Salesforce

        return Salesforce(
            instance_url=self.instance_url,
            session_id=self.session_id,
            session=self.requests_session(),
            version=self.api_version,
        )

    @property
    def token_url(self) -> str:
        """OAuth 2.0 username-password endpoint: POST grant_type=password, username, password."""
        return f"{self.instance_url}/services/oauth2/token"

    def expire_session(self) -> str:
        """Invalidate the current session (requests with it get 401) and hold a fresh one."""
        self.store.expire_session(self.session_id)
        self.session_id = self.store.new_session()
        return self.session_id

    def records(self, sobject: str) -> list[dict[str, Any]]:
        return self.store.records(sobject)

    def reset(self) -> None:
        """Wipe all records, jobs and usage (schema and sessions stay)."""
        self.store.reset()

    def api_calls_used(self) -> int:
        return self.store.api_calls_used()

    def calls(self, kind: str) -> int:
        """How many logged calls were of a kind: read, write, bulk, auth or limits."""
        return sum(1 for _, _, logged_kind in self.call_log if logged_kind == kind)

    # --- request handling --------------------------------------------------------------------------

    def _draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._rng_lock:
            if self._rng_faults is not self.faults:
                # New fault settings restart the draws from their seed, so a test's faults repeat.
                self._rng = random.Random(self.faults.seed)
                self._rng_faults = self.faults
            return self._rng.random() < rate

    def _lock_fault(self) -> Callable[[], bool] | None:
        if self.faults.lock_error_rate <= 0:
            return None
        return lambda: self._draw(self.faults.lock_error_rate)

    @staticmethod
    def _classify(method: str, path: str) -> str:
        if path.startswith("/services/oauth2/"):
            return "auth"
        if "/jobs/" in path or path.endswith("/jobs"):
            return "bulk"
        if path.rstrip("/").endswith("/limits"):
            return "limits"
        return "read" if method == "GET" else "write"

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _ApiResponse:
        split = urlsplit(raw_path)
        path = split.path
        self.call_log.append((method, path, self._classify(method, path)))
        if len(raw_path) > MAX_URI_LENGTH:
            return _error_response(414, "URI_TOO_LONG", f"The request URI is longer than {MAX_URI_LENGTH} characters")
        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000)  # emulated network latency, not test timing
        if path == "/services/oauth2/token":
            return self._oauth_token(method, body)
        if path.rstrip("/") == "/services/data":
            return _ApiResponse(
                200, [{"label": "Sandbox", "url": f"/services/data/v{API_VERSION}", "version": API_VERSION}]
            )
        parts = path.split("/")
        if len(parts) < 4 or parts[1:3] != ["services", "data"] or not parts[3].startswith("v"):
            return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
        version = parts[3][1:]
        segments = [unquote(p) for p in parts[4:] if p != ""]
        token = headers.get("Authorization") or headers.get("authorization") or ""
        token = token.split(" ", 1)[1] if " " in token else token
        is_limits = segments[:1] == ["limits"]
        self._session_expiry_fault()
        valid, used, allowed = self.store.check_request(token, self.daily_api_limit, count=not is_limits)
        if not valid:
            response = _error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
            response.headers["WWW-Authenticate"] = "Token"
            return response
        limit_header = {"Sforce-Limit-Info": f"api-usage={used}/{self.daily_api_limit}"}
        if self.faults.request_limit_exceeded or not allowed:
            response = _error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        elif self._server_fault():
            response = _error_response(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry")
        else:
            query = parse_qs(split.query, keep_blank_values=True)
            try:
                response = self._route(method, version, segments, query, headers, body, used)
            except RequestError as exc:
                response = _ApiResponse(exc.http_status, [exc.error.rest()])
            except SoqlError as exc:
                response = _error_response(400, exc.error_code, exc.message)
            if method != "GET" and self._lost_answer_fault():
                # The work is done and committed, but the client never learns it (a gateway
                # timeout after the commit): retrying a create blindly makes a duplicate.
                response = _error_response(504, "GATEWAY_TIMEOUT", "The server did not answer in time")
        response.headers.update(limit_header)
        return response

    def _session_expiry_fault(self) -> None:
        with self._rng_lock:
            if self.faults.expire_session_after <= 0:
                return
            self.faults.expire_session_after -= 1
            if self.faults.expire_session_after > 0:
                return
        self.expire_session()

    def _lost_answer_fault(self) -> bool:
        with self._rng_lock:
            if self.faults.lose_next_answers <= 0:
                return False
            self.faults.lose_next_answers -= 1
            return True

    def _server_fault(self) -> bool:
        with self._rng_lock:
            if self.faults.fail_next_requests > 0:
                self.faults.fail_next_requests -= 1
                return True
        return self._draw(self.faults.rate_5xx)

    def _oauth_token(self, method: str, body: bytes) -> _ApiResponse:
        if method != "POST":
            return _ApiResponse(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        if form.get("grant_type") != "password":
            return _ApiResponse(
                400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
            )
        # A security token may be appended to the password, as Salesforce allows.
        password = form.get("password", "")
        if form.get("username") != self.username or not password.startswith(self._password):
            return _ApiResponse(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        token = self.store.new_session()
        return _ApiResponse(
            200,
            {
                "access_token": token,
                "instance_url": self.instance_url,
                "id": f"{self.instance_url}/id/{ORG_ID}/{API_USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        )

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
    ) -> _ApiResponse:
        head = segments[0] if segments else ""
        if head == "":
            return _ApiResponse(
                200,
                {
                    name: f"/services/data/v{version}/{name}"
                    for name in ("sobjects", "query", "limits", "composite", "jobs")
                },
            )
        if head == "limits" and method == "GET":
            return self._limits(used)
        if head in ("query", "queryAll") and method == "GET":
            if len(segments) == 2:
                return _ApiResponse(200, self.store.query_more(segments[1], version))
            soql = (query.get("q") or [""])[0]
            if not soql.strip():
                return _error_response(400, "MALFORMED_QUERY", "A query string (q) is required")
            return _ApiResponse(200, self.store.query(soql, version))
        if head == "sobjects":
            return self._sobjects(method, version, segments[1:], query, body)
        if head == "composite" and segments[1:2] == ["sobjects"]:
            return self._collections(method, segments[2:], query, body)
        if head == "jobs" and segments[1:2] == ["ingest"]:
            return self._bulk(method, version, segments[2:], body)
        return _error_response(404, "NOT_FOUND", "The requested resource does not exist")

    def _limits(self, used: int) -> _ApiResponse:
        remaining = max(0, self.daily_api_limit - used)
        return _ApiResponse(
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
    def _single_failure(result: WriteResult) -> _ApiResponse:
        if result.errors and result.errors[0].status_code in ("ENTITY_IS_DELETED", "NOT_FOUND"):
            return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
        return _ApiResponse(400, [e.rest() for e in result.errors])

    def _sobjects(
        self, method: str, version: str, segments: list[str], query: dict[str, list[str]], body: bytes
    ) -> _ApiResponse:
        if not segments:
            if method != "GET":
                return _error_response(
                    405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET"
                )
            return _ApiResponse(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [
                        {k: v for k, v in spec.describe().items() if k != "fields"} for spec in OBJECTS.values()
                    ],
                },
            )
        spec = object_spec(segments[0])
        if spec is None:
            return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
        rest = segments[1:]
        if not rest:
            if method == "GET":
                return _ApiResponse(
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
                return _ApiResponse(201, {"id": result.id, "success": True, "errors": []})
            return _error_response(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST"
            )
        if rest == ["describe"] and method == "GET":
            return _ApiResponse(200, spec.describe())
        if len(rest) == 1:
            record_id = normalize_id(rest[0])
            if record_id is None or object_of_id(record_id) != spec.name:
                return _error_response(
                    404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {rest[0]}"
                )
            return self._one_record(method, version, spec.name, record_id, query, body)
        if len(rest) == 2:
            record_id = normalize_id(rest[0])
            blob_field = spec.field(rest[1])
            if record_id is not None and blob_field is not None and blob_field.type == "base64" and method == "GET":
                record = self.store.get(spec.name, record_id)
                if record is None or record.get(blob_field.name) is None:
                    return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
                return _ApiResponse(
                    200,
                    base64.b64decode(record[blob_field.name]),
                    content_type=record.get("ContentType") or "application/octet-stream",
                )
            return self._by_external_id(method, version, spec.name, rest[0], rest[1], body)
        return _error_response(404, "NOT_FOUND", "The requested resource does not exist")

    def _render_full(
        self, sobject: str, record: dict[str, Any], version: str, wanted: list[str] | None
    ) -> dict[str, Any]:
        spec = OBJECTS[sobject]
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
    ) -> _ApiResponse:
        if method == "GET":
            record = self.store.get(sobject, record_id)
            if record is None:
                return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
            wanted = [f for f in (query.get("fields") or [""])[0].split(",") if f]
            return _ApiResponse(200, self._render_full(sobject, record, version, wanted))
        if method == "PATCH":
            changes = self._json(body)
            if not isinstance(changes, dict):
                raise RequestError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            [result] = self.store.write(
                sobject, "update", [{**changes, "Id": record_id}], lock_fault=self._lock_fault()
            )
            return _ApiResponse(204) if result.success else self._single_failure(result)
        if method == "DELETE":
            if self.store.get(sobject, record_id) is None:
                return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
            [result] = self.store.delete([record_id])
            return _ApiResponse(204) if result.success else self._single_failure(result)
        return _error_response(
            405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE"
        )

    def _by_external_id(
        self, method: str, version: str, sobject: str, field_name: str, value: str, body: bytes
    ) -> _ApiResponse:
        spec = OBJECTS[sobject]
        field_spec = spec.field(field_name)
        if field_spec is None or not (field_spec.external_id or field_spec.name == "Id" or field_spec.type == "email"):
            return _error_response(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        if method == "PATCH":
            if not field_spec.external_id and field_spec.name != "Id":
                return _error_response(
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
            return _ApiResponse(
                201 if result.created else 200,
                {"id": result.id, "success": True, "errors": [], "created": result.created},
            )
        matches = self.store.find_by_external_id(spec, field_spec.name, value)
        if not matches:
            return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
        if len(matches) > 1:
            return _ApiResponse(300, [f"/services/data/v{version}/sobjects/{sobject}/{m}" for m in matches])
        if method == "GET":
            record = self.store.get(sobject, matches[0])
            assert record is not None
            return _ApiResponse(200, self._render_full(sobject, record, version, None))
        if method == "DELETE":
            [result] = self.store.delete(matches)
            return _ApiResponse(204) if result.success else self._single_failure(result)
        return _error_response(
            405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE"
        )

    # --- sObject Collections -----------------------------------------------------------------------

    def _collections(self, method: str, segments: list[str], query: dict[str, list[str]], body: bytes) -> _ApiResponse:
        if method == "DELETE" and not segments:
            ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
            if len(ids) > MAX_COLLECTION_RECORDS:
                return self._too_many()
            all_or_none = (query.get("allOrNone") or ["false"])[0].lower() == "true"
            results = self.store.delete(ids, all_or_none=all_or_none)
            return _ApiResponse(200, [r.collection(False) for r in results])
        if method == "GET" and len(segments) == 1:
            spec = object_spec(segments[0])
            if spec is None:
                return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
            ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
            wanted = [f for f in (query.get("fields") or [""])[0].split(",") if f]
            if len(ids) > 2000:
                return self._too_many()
            out: list[Any] = []
            for raw in ids:
                record_id = normalize_id(raw)
                record = self.store.get(spec.name, record_id) if record_id else None
                out.append(self._render_full(spec.name, record, API_VERSION, wanted) if record else None)
            return _ApiResponse(200, out)
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
            spec = object_spec(segments[0])
            if spec is None:
                return _error_response(404, "NOT_FOUND", "The requested resource does not exist")
            return self._collection_write("upsert", records, all_or_none, spec.name, segments[1])
        return _error_response(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed here")

    @staticmethod
    def _too_many() -> _ApiResponse:
        return _error_response(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call",
        )

    def _collection_write(
        self, operation: str, records: list[Any], all_or_none: bool, sobject: str | None, external_field: str | None
    ) -> _ApiResponse:
        """Group records by type (in order of first appearance) and write each group; results keep request order."""
        groups: dict[str, list[int]] = {}
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
            spec = object_spec(type_name or "")
            if spec is None:
                results[index] = WriteResult(errors=[SfError("INVALID_TYPE", "Must send a concrete entity type.")])
                continue
            groups.setdefault(spec.name, []).append(index)
        if all_or_none and any(r is not None for r in results):
            return self._collection_response(results, all_or_none, operation == "upsert")
        names = list(groups)
        written = self.store.write_groups(
            [(name, [records[i] for i in groups[name]]) for name in names],
            operation,
            external_id_field=external_field,
            all_or_none=all_or_none,
            lock_fault=self._lock_fault(),
        )
        for name, group_results in zip(names, written, strict=True):
            for index, result in zip(groups[name], group_results, strict=True):
                results[index] = result
        return self._collection_response(results, all_or_none, operation == "upsert")

    @staticmethod
    def _collection_response(results: list[WriteResult | None], all_or_none: bool, with_created: bool) -> _ApiResponse:
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
        return _ApiResponse(200, [r.collection(with_created) for r in filled])

    # --- Bulk API 2.0 ingest -----------------------------------------------------------------------

    def _bulk(self, method: str, version: str, segments: list[str], body: bytes) -> _ApiResponse:
        if not segments:
            if method == "POST":
                request = self._json(body)
                if not isinstance(request, dict):
                    raise RequestError(400, "JSON_PARSER_ERROR", "The job request must be a JSON object")
                return _ApiResponse(200, self.store.create_job(request, version))
            if method == "GET":
                jobs = self.store.list_jobs()
                return _ApiResponse(200, {"done": True, "records": jobs, "nextRecordsUrl": None})
            return _error_response(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST"
            )
        job_id = segments[0]
        if len(segments) == 1:
            if method == "GET":
                return _ApiResponse(200, self.store.job_info(job_id))
            if method == "PATCH":
                request = self._json(body)
                state = request.get("state") if isinstance(request, dict) else None
                return _ApiResponse(200, self.store.set_job_state(job_id, str(state), self._lock_fault()))
            if method == "DELETE":
                self.store.delete_job(job_id)
                return _ApiResponse(204)
        if len(segments) == 2:
            if segments[1] == "batches" and method == "PUT":
                self.store.upload_job_data(job_id, body.decode("utf-8-sig"))
                return _ApiResponse(201)
            if segments[1] in ("successfulResults", "failedResults", "unprocessedrecords") and method == "GET":
                return _ApiResponse(200, self.store.job_results(job_id, segments[1]), content_type="text/csv")
        return _error_response(404, "NOT_FOUND", "The requested resource does not exist")


def main() -> None:
    """Serve a sandbox org until interrupted: `python -m campaign_pipeline.sandbox.salesforce_api`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--schema", default="sandbox_salesforce", help="Postgres schema of the org")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--daily-api-limit", type=int, default=15_000)
    arguments = parser.parse_args()
    with SalesforceSandbox(
        schema=arguments.schema, port=arguments.port, daily_api_limit=arguments.daily_api_limit
    ) as org:
        # The session id is a throwaway credential of a local emulator; printing it is how a user connects.
        print(
            json.dumps(
                {
                    "instance_url": org.instance_url,
                    "session_id": org.session_id,
                    "ca_path": org.ca_path,
                    "api_version": org.api_version,
                }
            )
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
