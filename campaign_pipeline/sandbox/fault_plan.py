"""Faults for the sandboxes set from outside the process: CAMPAIGN_PIPELINE_SANDBOX_FAULTS, read when a sandbox starts.

A run process builds its own sandboxes, so a test or benchmark that starts (and kills) run processes cannot set
`sandbox.faults` on them directly. This variable holds JSON: `{"salesforce": {...}, "mailchimp": {...}}`.
Plain keys set the fields of `SalesforceFaults` / `MailchimpFaults` of the same name (`lock_error_rate`,
`expire_session_after`, `rate_429_empty`, `max_connections`...). Request rules act on requests that match a
method and a path regex (Salesforce: the path under /services/data/vNN, e.g. `^/composite/sobjects/?$`):

- `lose_answers_on: [{method, path, count}]` — the next `count` matching requests are carried out and
  committed, then answered 504, as if the answer was lost on the way back;
- `crash_on: [{when: before|after, method, path, nth}]` — at the nth matching request the process SIGKILLs
  itself, before doing the work or after committing it (the answer never leaves): a hard crash at an exact
  point of a run;
- `pause_on: [{method, path, release}]` — the first matching request waits until the file `release` exists
  (the harness stops Postgres meanwhile).

Every fault that fires is appended as a JSON line to CAMPAIGN_PIPELINE_SANDBOX_FAULT_LOG when set, so a caller
can tell a fault that happened from one whose path the run never took.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULTS_ENV = "CAMPAIGN_PIPELINE_SANDBOX_FAULTS"
FAULT_LOG_ENV = "CAMPAIGN_PIPELINE_SANDBOX_FAULT_LOG"
RULE_KEYS = ("lose_answers_on", "crash_on", "pause_on")


@dataclass
class _Rule:
    kind: str
    method: re.Pattern[str]
    path: re.Pattern[str]
    when: str = "before"
    remaining: int = 1  # lose: answers still to lose; crash: matches until the crash; pause: pauses left
    release: str = ""

    def matches(self, method: str, path: str) -> bool:
        return bool(self.method.fullmatch(method) and self.path.search(path))


@dataclass
class FaultPlan:
    """The faults one sandbox takes from the environment."""

    settings: dict[str, Any] = field(default_factory=dict)
    rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_env(cls, system: str) -> FaultPlan:
        raw = os.environ.get(FAULTS_ENV, "").strip()
        if not raw:
            return cls()
        try:
            config = json.loads(raw).get(system) or {}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{FAULTS_ENV} must be a JSON object like {{'{system}': {{...}}}}: {exc}") from exc
        rules = []
        for kind in RULE_KEYS:
            for spec in config.get(kind, []):
                count = int(spec.get("nth" if kind == "crash_on" else "count", 1))
                rules.append(
                    _Rule(
                        kind=kind,
                        method=re.compile(spec.get("method", ".*")),
                        path=re.compile(spec.get("path", ".*")),
                        when=spec.get("when", "before"),
                        remaining=count,
                        release=spec.get("release", ""),
                    )
                )
        settings = {k: v for k, v in config.items() if k not in RULE_KEYS}
        return cls(settings=settings, rules=rules)

    def lose_answers_on(self, method: str, path: str, count: int = 1) -> None:
        """Add a rule while the sandbox runs: the next ``count`` requests matching method and path regexes are
        carried out, then answered 504 (what ``lose_answers_on`` in the environment sets at start)."""
        with self._lock:
            self.rules.append(
                _Rule(kind="lose_answers_on", method=re.compile(method), path=re.compile(path), remaining=count)
            )

    def answers_still_to_lose(self) -> int:
        with self._lock:
            return sum(rule.remaining for rule in self.rules if rule.kind == "lose_answers_on")

    def apply_settings(self, faults: Any) -> Any:
        """Set the named fields on a faults object, refusing names it does not have."""
        for name, value in self.settings.items():
            if not hasattr(faults, name) or name.startswith("_"):
                raise ValueError(f"{FAULTS_ENV}: {type(faults).__name__} has no fault {name!r}")
            setattr(faults, name, value)
        if self.settings:  # rates and counters: set, not known to fire (the sandbox's own logs say that)
            _log({"fault": "settings", "on": type(faults).__name__, **self.settings})
        return faults

    def before(self, method: str, path: str) -> None:
        """Called when a request arrives, before any work: crashes or pauses that happen first."""
        for rule in self._fire(method, path, ("crash_on", "pause_on"), when="before"):
            if rule.kind == "crash_on":
                _crash()
            else:
                while rule.release and not Path(rule.release).exists():
                    time.sleep(0.05)

    def after(self, method: str, path: str) -> bool:
        """Called once the work is committed: crash now, or True when this answer is to be lost."""
        for rule in self._fire(method, path, ("crash_on",), when="after"):
            if rule.kind == "crash_on":
                _crash()
        return bool(self._fire(method, path, ("lose_answers_on",), when=None))

    def _fire(self, method: str, path: str, kinds: tuple[str, ...], when: str | None) -> list[_Rule]:
        fired = []
        with self._lock:
            for rule in self.rules:
                if rule.kind not in kinds or (when and rule.kind == "crash_on" and rule.when != when):
                    continue
                if rule.remaining <= 0 or not rule.matches(method, path):
                    continue
                if rule.kind == "crash_on":
                    rule.remaining -= 1
                    if rule.remaining > 0:
                        continue  # not the nth match yet
                else:
                    rule.remaining -= 1
                fired.append(rule)
                _log({"fault": rule.kind, "when": rule.when, "method": method, "path": path})
        return fired


def _log(entry: dict[str, Any]) -> None:
    target = os.environ.get(FAULT_LOG_ENV)
    if not target:
        return
    with open(target, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
        log.flush()
        os.fsync(log.fileno())  # the crash that may follow must not lose the record of it


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
