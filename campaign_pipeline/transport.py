"""One HTTP transport per outside API: a requests.Session whose urllib3 Retry does backoff, jitter and Retry-After.

Retries live here and nowhere else for the HTTP layer (domain retries such as UNABLE_TO_LOCK_ROW or a session
refresh stay with the code that understands them). The rule that keeps writes safe: a request that may have
reached the server is repeated only if its method is idempotent. urllib3 repeats a request that could not
connect whatever its method (nothing was sent), but repeats a read timeout, a reset after sending or a retryable
status only for the methods in ``idempotent_methods``; POST creates and Bulk API uploads (PUT appends data) are
never among them, so an answer lost after the server committed is left to the caller's lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# Statuses that mean "not done, try again" when the method allows it.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

RetryObserver = Callable[[str, str, int | None, Exception | None], None]


class ObservedRetry(Retry):
    """urllib3's Retry that tells an observer about each retry (for the run's retry counts in metadata)."""

    observer: RetryObserver | None = None

    def new(self, **kw: Any) -> ObservedRetry:
        renewed = super().new(**kw)
        renewed.observer = self.observer
        return renewed

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> ObservedRetry:
        renewed = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.observer is not None:
            self.observer(method or "", url or "", getattr(response, "status", None), error)
        return renewed


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one API's transport tries: attempts, backoff (doubling from ``backoff_seconds``) and jitter."""

    retries: int = 4
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    jitter_seconds: float = 0.5
    idempotent_methods: Collection[str] = READ_ONLY_METHODS
    statuses: Collection[int] = RETRY_STATUSES

    def retry(self, observer: RetryObserver | None = None) -> ObservedRetry:
        retry = ObservedRetry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            other=0,
            redirect=False,
            allowed_methods=frozenset(method.upper() for method in self.idempotent_methods),
            status_forcelist=frozenset(self.statuses),
            backoff_factor=self.backoff_seconds / 2,  # urllib3 sleeps factor * 2**(n-1): first retry = backoff_seconds
            backoff_max=self.backoff_max_seconds,
            backoff_jitter=self.jitter_seconds,
            respect_retry_after_header=True,
            # The last answer goes back to the client, which turns it into its own error with the server's message.
            raise_on_status=False,
        )
        retry.observer = observer
        return retry


def mount_retries(
    session: requests.Session,
    policy: RetryPolicy,
    *,
    observer: RetryObserver | None = None,
    pool_size: int = 10,
) -> requests.Session:
    """Mount the policy on ``session`` for http:// and https:// (the session's TLS settings are kept)."""
    adapter = HTTPAdapter(max_retries=policy.retry(observer), pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def retrying_session(
    policy: RetryPolicy, *, observer: RetryObserver | None = None, pool_size: int = 10
) -> requests.Session:
    """A new session with the policy mounted."""
    return mount_retries(requests.Session(), policy, observer=observer, pool_size=pool_size)
