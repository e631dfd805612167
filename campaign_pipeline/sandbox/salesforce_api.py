"""The sandbox Salesforce org: an HTTPS emulator of the REST API parts the pipeline uses, state in Postgres."""

from __future__ import annotations

import base64
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

from campaign_pipeline.sandbox.fault_plan import FaultPlan
from campaign_pipeline.sandbox.salesforce_objects import (
    API_USER_ID,
    API_VERSION,
)
from campaign_pipeline.sandbox.salesforce_routes import ApiResponse, SalesforceRoutes, error_response
from campaign_pipeline.sandbox.salesforce_seed import SeedSummary, seed_people
from campaign_pipeline.sandbox.salesforce_soql import SoqlError
from campaign_pipeline.sandbox.salesforce_store import RequestError, SalesforceStore

logger = logging.getLogger(__name__)

MAX_URI_LENGTH = 16_384
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
            response = error_response(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred in the sandbox org")
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


class SalesforceSandbox(SalesforceRoutes):
    """A sandbox org served over HTTPS on 127.0.0.1; use as a context manager.

    Several instances (or processes) on one engine and schema are one org: records,
    sessions, API usage, query cursors and Bulk jobs all live in Postgres. What stays in
    the instance is its own session token, its call log and its fault settings.

    Resources under /services/data/v62.0/: sobjects (describeGlobal), sobjects/{Type} (POST
    create), sobjects/{Type}/describe, sobjects/{Type}/{Id} (GET/PATCH/DELETE),
    sobjects/{Type}/{ExternalIdField}/{value} (GET, PATCH upsert, DELETE),
    sobjects/Attachment/{Id}/Body, query?q= and query/{locator}, queryAll (deleted records too, with
    IsDeleted), composite/sobjects (POST create, PATCH update, DELETE ?ids=, GET /{Type}?ids=),
    composite/sobjects/{Type}/{Field} (PATCH upsert), jobs/ingest (Bulk API 2.0 ingest), jobs/query
    (Bulk API 2.0 query: results pages and Sforce-Locator), limits. Every record carries SystemModstamp,
    moved by every change (conversion and deletion too). Outside it: /services/oauth2/token
    (grant_type=password with `username` and DEFAULT_PASSWORD, optionally + a token suffix).
    ``person_accounts=True`` enables Person Accounts on the org, for good (salesforce_person_account_rules).
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
        person_accounts: bool = False,
    ) -> None:
        if engine is None:
            from campaign_pipeline.storage.database import get_engine

            engine = get_engine()
        self.store = SalesforceStore(engine, schema, person_accounts=person_accounts)
        # Faults set from outside the process (CAMPAIGN_PIPELINE_SANDBOX_FAULTS) when none are given.
        self._plan = FaultPlan() if faults is not None else FaultPlan.from_env("salesforce")
        self.faults = faults or self._plan.apply_settings(SalesforceFaults())
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

    @property
    def org_id(self) -> str:
        """This org's Organization Id (each schema is its own org); access tokens start with it."""
        return self.store.org_id

    def convert_lead(self, lead_id: str) -> str:
        """Convert a Lead (Salesforce's convertLead, which is no REST call): returns the new Contact's Id."""
        return self.store.convert_lead(lead_id)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        return self.store.records(sobject)

    def lose_answers_on(self, method: str, path: str, count: int = 1) -> None:
        """Lose the answers to the next ``count`` requests matching ``method`` (regex, e.g. ``POST``) and ``path``
        (regex on the path under /services/data/vNN, e.g. ``^/composite/sobjects/?$``): each is carried out and
        committed, then answered 504. Lets a test lose the answer on one write path of a whole sync."""
        self._plan.lose_answers_on(method, path, count)

    def answers_still_to_lose(self) -> int:
        """Answers rules set by ``lose_answers_on`` (here or in the environment) have not lost yet."""
        return self._plan.answers_still_to_lose()

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

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> ApiResponse:
        split = urlsplit(raw_path)
        path = split.path
        self.call_log.append((method, path, self._classify(method, path)))
        if len(raw_path) > MAX_URI_LENGTH:
            return error_response(414, "URI_TOO_LONG", f"The request URI is longer than {MAX_URI_LENGTH} characters")
        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000)  # emulated network latency, not test timing
        if path == "/services/oauth2/token":
            return self._oauth_token(method, body)
        if path.rstrip("/") == "/services/data":
            return ApiResponse(
                200, [{"label": "Sandbox", "url": f"/services/data/v{API_VERSION}", "version": API_VERSION}]
            )
        parts = path.split("/")
        if len(parts) < 4 or parts[1:3] != ["services", "data"] or not parts[3].startswith("v"):
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        version = parts[3][1:]
        segments = [unquote(p) for p in parts[4:] if p != ""]
        token = headers.get("Authorization") or headers.get("authorization") or ""
        token = token.split(" ", 1)[1] if " " in token else token
        is_limits = segments[:1] == ["limits"]
        self._session_expiry_fault()
        valid, used, allowed = self.store.check_request(token, self.daily_api_limit, count=not is_limits)
        if not valid:
            response = error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
            response.headers["WWW-Authenticate"] = "Token"
            return response
        limit_header = {"Sforce-Limit-Info": f"api-usage={used}/{self.daily_api_limit}"}
        if self.faults.request_limit_exceeded or not allowed:
            response = error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        elif self._server_fault():
            response = error_response(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry")
        else:
            query = parse_qs(split.query, keep_blank_values=True)
            api_path = "/" + "/".join(segments)
            self._plan.before(method, api_path)
            try:
                response = self._route(method, version, segments, query, headers, body, used)
            except RequestError as exc:
                response = ApiResponse(exc.http_status, [exc.error.rest()])
            except SoqlError as exc:
                response = error_response(400, exc.error_code, exc.message)
            lose_by_rule = self._plan.after(method, api_path)
            if lose_by_rule or (method != "GET" and self._lost_answer_fault()):
                # The work is done and committed, but the client never learns it (a gateway
                # timeout after the commit): retrying a create blindly makes a duplicate.
                response = error_response(504, "GATEWAY_TIMEOUT", "The server did not answer in time")
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

    def _oauth_token(self, method: str, body: bytes) -> ApiResponse:
        if method != "POST":
            return ApiResponse(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        if form.get("grant_type") != "password":
            return ApiResponse(
                400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
            )
        # A security token may be appended to the password, as Salesforce allows.
        password = form.get("password", "")
        if form.get("username") != self.username or not password.startswith(self._password):
            return ApiResponse(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        token = self.store.new_session()
        return ApiResponse(
            200,
            {
                "access_token": token,
                "instance_url": self.instance_url,
                "id": f"{self.instance_url}/id/{self.store.org_id}/{API_USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        )
