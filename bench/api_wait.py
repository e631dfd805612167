"""How long a run waits on the outside APIs, so the rest of its wall time is its own processing.

Both clients send every request through a ``requests.Session`` (the project's one transport mounts its retries
there; its sleeps between retries happen inside ``send``), and every wait between Bulk API polls goes through
``SalesforceClient.sleep``. ``ApiWaitClock.installed`` wraps those two for the duration of a benchmark, in the
benchmark's process only, and counts the wall time during which at least one of them is under way: requests in
flight side by side count once, so ``seconds`` never exceeds the wall time it was measured over.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from campaign_pipeline.salesforce.resource import SalesforceClient


class ApiWaitClock:
    """Wall time with at least one wait under way, overall and per API (a label given by the caller)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._depth: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._seconds: dict[str, float] = {}
        self.waits: dict[str, int] = {}
        # The stretches with any wait under way, in order: what a step's own time is measured against.
        self.intervals: list[tuple[float, float]] = []
        # Every request sent while installed: (when, label, method, URL), to count requests by kind and step.
        self.sent: list[tuple[float, str, str, str]] = []

    @contextlib.contextmanager
    def waiting(self, label: str) -> Iterator[None]:
        self._enter(label)
        try:
            yield
        finally:
            self._leave(label)

    def _enter(self, label: str) -> None:
        now = self._clock()
        with self._lock:
            self.waits[label] = self.waits.get(label, 0) + 1
            for key in ("all", label):
                if self._depth.get(key, 0) == 0:
                    self._since[key] = now
                self._depth[key] = self._depth.get(key, 0) + 1

    def _leave(self, label: str) -> None:
        now = self._clock()
        with self._lock:
            for key in ("all", label):
                self._depth[key] -= 1
                if self._depth[key] == 0:
                    since = self._since.pop(key)
                    self._seconds[key] = self._seconds.get(key, 0.0) + now - since
                    if key == "all":
                        self.intervals.append((since, now))

    def seconds(self, label: str = "all") -> float:
        """Waited so far under ``label`` ("all": any); a wait still under way counts up to now."""
        now = self._clock()
        with self._lock:
            done = self._seconds.get(label, 0.0)
            if self._depth.get(label, 0):
                done += now - self._since[label]
            return done

    def overlap(self, start: float, end: float) -> float:
        """Seconds of finished waits (any API) between ``start`` and ``end`` on this clock."""
        with self._lock:
            return sum(max(0.0, min(end, stop) - max(start, since)) for since, stop in self.intervals)

    @contextlib.contextmanager
    def installed(self, label_of: Callable[[str], str]) -> Iterator[ApiWaitClock]:
        """Time every ``requests.Session.send`` (labelled by ``label_of(url)``) and ``SalesforceClient.sleep``
        ("salesforce") until the block ends, then put both back."""
        send, sleep = requests.Session.send, SalesforceClient.sleep
        clock = self

        def timed_send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            url = str(request.url)
            label = label_of(url)
            clock.sent.append((clock._clock(), label, str(request.method), url))
            with clock.waiting(label):
                return send(session, request, **kwargs)

        def timed_sleep(client: SalesforceClient, seconds: float) -> None:
            with clock.waiting("salesforce"):
                sleep(client, seconds)

        requests.Session.send = timed_send  # type: ignore[method-assign, assignment]
        SalesforceClient.sleep = timed_sleep  # type: ignore[method-assign, assignment]
        try:
            yield self
        finally:
            requests.Session.send = send  # type: ignore[method-assign, assignment]
            SalesforceClient.sleep = sleep  # type: ignore[method-assign, assignment]


_RECORD_ID = re.compile(r"^(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{15,18}$")
_API_VERSION = re.compile(r"^/services/data/v[0-9.]+")


def request_kind(method: str, url: str) -> str:
    """``METHOD path`` with the API version, record and job Ids and the query string left out: what a request
    was, e.g. ``GET /jobs/query/{id}/results`` or ``PATCH /composite/sobjects``."""
    path = _API_VERSION.sub("", urlsplit(url).path)
    segments = ["{id}" if _RECORD_ID.match(segment) else segment for segment in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


def label_by_prefix(prefixes: dict[str, str]) -> Callable[[str], str]:
    """A ``label_of`` for ``installed``: the label of the first URL prefix the URL starts with, else "other"."""

    def label_of(url: str) -> str:
        for prefix, label in prefixes.items():
            if url.startswith(prefix):
                return label
        return "other"

    return label_of
