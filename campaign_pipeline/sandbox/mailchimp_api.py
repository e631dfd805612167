"""A loopback HTTP emulator of the Mailchimp Marketing API v3 endpoints the pipeline reads, with fault injection.

Serves a `SandboxAccount` (see mailchimp_data) to the real `mailchimp-marketing` client: set
``client.set_config({"api_key": sb.api_key})`` and ``client.api_client.host = sb.base_url``.
Errors are ``application/problem+json`` like Mailchimp's; faults (429 with an empty body, 5xx, slow responses,
the 10-simultaneous-connections cap per key) are set on ``sb.faults`` and may be changed while it runs.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from campaign_pipeline.sandbox.fault_plan import FaultPlan
from campaign_pipeline.sandbox.mailchimp_data import (
    SandboxAccount,
)
from campaign_pipeline.sandbox.mailchimp_routes import ApiError, MailchimpRoutes

API_PREFIX = "/3.0"
ERROR_DOC_URL = "https://mailchimp.com/developer/marketing/docs/errors/"


@dataclass
class MailchimpFaults:
    """Faults the sandbox injects; mutable while the server runs (tests flip them between calls).

    rate_429_empty / rate_5xx are probabilities per request; slow_ms delays every response;
    fail_next(n, status) makes the next n requests fail with that status (429 with an empty body).
    max_connections is Mailchimp's cap on simultaneous connections per API key: the one over it gets 429.
    """

    rate_429_empty: float = 0.0
    rate_5xx: float = 0.0
    slow_ms: int = 0
    max_connections: int = 10
    seed: int = 0
    _forced: list[int] = field(default_factory=list, repr=False)
    # Set = requests flow; cleared by pause() = admitted requests wait, so tests can hold connections open.
    _flowing: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _random: random.Random | None = field(default=None, repr=False)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Make the next `n` API requests (after authentication) fail with `status`."""
        with self._lock:
            self._forced.extend([status] * n)

    def __post_init__(self) -> None:
        self._flowing.set()

    def pause(self) -> None:
        """Hold every admitted request (after the connection cap check) until resume()."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def wait_if_paused(self, timeout: float = 60.0) -> None:
        self._flowing.wait(timeout)

    def clear(self) -> None:
        with self._lock:
            self._forced.clear()
        self.rate_429_empty = self.rate_5xx = 0.0
        self.slow_ms = 0

    def draw(self) -> int | None:
        """The status this request must fail with, or None to serve it normally."""
        with self._lock:
            if self._forced:
                return self._forced.pop(0)
            if self._random is None:
                self._random = random.Random(self.seed)
            roll = self._random.random()
        if roll < self.rate_429_empty:
            return 429
        if roll < self.rate_429_empty + self.rate_5xx:
            return 503 if roll < self.rate_429_empty + self.rate_5xx / 2 else 500
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Enough backlog that a burst over the connection cap reaches the handler and gets its 429.
    request_queue_size = 128
    sandbox: MailchimpSandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # the request log lives on the sandbox object; stderr chatter would drown test output

    def do_GET(self) -> None:
        self.server.sandbox._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.sandbox._handle(self, "POST")

    def do_PATCH(self) -> None:
        self.server.sandbox._handle(self, "PATCH")

    def do_PUT(self) -> None:
        self.server.sandbox._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.sandbox._handle(self, "DELETE")


class MailchimpSandbox:
    """A threaded Mailchimp API emulator on loopback; use as a context manager."""

    def __init__(
        self,
        account: SandboxAccount | None = None,
        faults: MailchimpFaults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        request_log_limit: int = 200_000,
    ) -> None:
        self.account = account if account is not None else SandboxAccount()
        # Faults set from outside the process (CAMPAIGN_PIPELINE_SANDBOX_FAULTS) when none are given.
        self.faults = (
            faults if faults is not None else FaultPlan.from_env("mailchimp").apply_settings(MailchimpFaults())
        )
        self.routes = MailchimpRoutes(self.account)
        self.request_log: list[tuple[str, str, dict[str, str], int]] = []
        self._logged = threading.Condition()
        # A long-running `serve` must not grow without bound; tests stay far below the limit.
        self.request_log_limit = request_log_limit
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._in_flight: dict[str, int] = {}
        self._in_flight_lock = threading.Lock()
        self.max_in_flight_seen = 0

    @property
    def api_key(self) -> str:
        return self.account.api_key

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Mailchimp sandbox is not running; use it as a context manager or call start()")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}{API_PREFIX}"

    def start(self) -> MailchimpSandbox:
        self._server = _Server((self._host, self._port), _Handler)
        self._server.sandbox = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mailchimp-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Release requests a test left paused, so their threads end with the server.
        self.faults.resume()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MailchimpSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_log(self, predicate, timeout: float = 30.0) -> bool:
        """Block until predicate(request_log) holds (or timeout); lets tests wait on events, not on the clock."""
        with self._logged:
            return self._logged.wait_for(lambda: predicate(self.request_log), timeout)

    def calls(self, path_contains: str = "") -> int:
        """How many requests reached the sandbox whose path contains `path_contains`."""
        return sum(1 for _, path, _, _ in self.request_log if path_contains in path)

    # -------------------------------------------------------------- request handling

    def _authenticated_key(self, handler: BaseHTTPRequestHandler) -> str | None:
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                _, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return password if hmac.compare_digest(password.encode(), self.api_key.encode()) else None
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), self.api_key.encode()):
            return header[7:]
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        key = self._authenticated_key(handler)
        if key is None:
            self._problem(
                handler,
                method,
                path,
                query,
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
            return
        with self._in_flight_lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            in_flight = self._in_flight[key]
            self.max_in_flight_seen = max(self.max_in_flight_seen, in_flight)
        released = False

        def release_slot() -> None:
            # A request stops counting once its answer is ready, before the bytes go out: a client that
            # reads the answer and at once sends its next request must not be seen as one connection too many.
            nonlocal released
            if not released:
                released = True
                with self._in_flight_lock:
                    self._in_flight[key] -= 1

        handler._release_slot = release_slot  # type: ignore[attr-defined]
        try:
            if in_flight > self.faults.max_connections:
                self._problem(
                    handler,
                    method,
                    path,
                    query,
                    429,
                    "Too Many Requests",
                    f"You have exceeded the limit of {self.faults.max_connections} simultaneous connections.",
                )
                return
            self.faults.wait_if_paused()
            if self.faults.slow_ms:
                time.sleep(self.faults.slow_ms / 1000)
            forced = self.faults.draw()
            if forced == 429:
                # Mailchimp's edge answers bursts with a bare 429; the 3.0.80 client returns, not raises, those.
                self._send(handler, method, path, query, 429, b"", None)
                return
            if forced is not None:
                self._problem(
                    handler,
                    method,
                    path,
                    query,
                    forced,
                    HTTPStatus(forced).phrase,
                    "Injected sandbox fault; retry later.",
                )
                return
            if method != "GET":
                self._problem(
                    handler, method, path, query, 405, "Method Not Allowed", "The sandbox serves GET requests only."
                )
                return
            if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
                self._problem(handler, method, path, query, 404, "Resource Not Found", "Unknown API version path.")
                return
            try:
                body = self.routes.dispatch(path[len(API_PREFIX) :] or "/", query)
            except ApiError as err:
                self._problem(handler, method, path, query, err.status, err.title, err.detail)
                return
            except Exception as err:  # a sandbox bug must still answer, or the client hangs on a dropped socket
                self._problem(
                    handler, method, path, query, 500, "Internal Server Error", f"sandbox failed on {path}: {err!r}"
                )
                return
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self._send(handler, method, path, query, 200, payload, "application/json; charset=utf-8")
        finally:
            release_slot()

    def _problem(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        title: str,
        detail: str,
    ) -> None:
        body = {
            "type": ERROR_DOC_URL,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": str(uuid.uuid4()),
        }
        payload = json.dumps(body).encode("utf-8")
        self._send(handler, method, path, query, status, payload, "application/problem+json; charset=utf-8")

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        payload: bytes,
        content_type: str | None,
    ) -> None:
        with self._logged:
            self.request_log.append((method, path, query, status))
            if len(self.request_log) > self.request_log_limit:
                del self.request_log[: len(self.request_log) // 2]
            self._logged.notify_all()
        release = getattr(handler, "_release_slot", None)
        if release is not None:
            release()
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def serve(
    host: str,
    port: int,
    account: SandboxAccount | None = None,
    state_path: Path | str | None = None,
    *,
    stop: threading.Event | None = None,
    on_ready: Callable[[MailchimpSandbox], None] | None = None,
) -> None:
    """Run the Mailchimp sandbox in the foreground until interrupted or `stop` is set (`campaign-pipeline sandbox serve`).

    With no account, a default one whose clock follows the wall clock (activity keeps arriving as time passes).
    With `state_path`, the clock and simulated sends are shared with every process using the same file.
    """
    if account is None:
        account = SandboxAccount(state_path=state_path, follow_wall_clock=True)
    elif state_path is not None and account.state_path != Path(state_path):
        account = account.with_state_path(state_path)
    sandbox = MailchimpSandbox(account, host=host, port=port).start()
    # The key is a sandbox key derived from the seed, not a credential; people need it to point a client here.
    print(f"Mailchimp sandbox serving {sandbox.base_url} (sandbox API key: {sandbox.api_key})", flush=True)
    if on_ready is not None:
        on_ready(sandbox)
    stop = stop if stop is not None else threading.Event()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
