"""State of a sandbox Mailchimp account shared between processes: clock, extra sends, deleted members."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from filelock import FileLock

from campaign_pipeline.sandbox.mailchimp_model import epoch_of, format_timestamp


@dataclass
class SharedState:
    anchor: int
    clock_seconds: int = 0
    extra_send_times: list[int] = field(default_factory=list)
    follow_wall_clock: bool = False
    deleted_members: list[int] = field(default_factory=list)

    @property
    def now(self) -> int:
        base = int(time.time()) if self.follow_wall_clock else self.anchor
        return base + self.clock_seconds


class AccountState:
    """The account's SharedState, in memory, or in a JSON file every process of a deployment reads.

    Updates are serialised by a thread lock and, with a file, by `filelock` on a side file, so two
    Dagster run processes that both advance the clock or add a send never lose one of the changes.
    """

    def __init__(self, seed: int, initial: SharedState, path: Path | None) -> None:
        self.seed = seed
        self.path = path
        self._memory = initial
        self._thread_lock = threading.Lock()
        if path is not None:
            self._file_lock: FileLock | None = FileLock(path.with_name(path.name + ".lock"))
            self._init_file(path, initial)
        else:
            self._file_lock = None

    def _init_file(self, path: Path, initial: SharedState) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self._file_lock is not None
        with self._file_lock:
            if path.exists():
                stored = json.loads(path.read_text())
                if stored.get("seed") != self.seed:
                    raise ValueError(
                        f"sandbox state file {path} belongs to seed {stored.get('seed')}, "
                        f"not {self.seed}: delete it or pass another state_path"
                    )
            else:
                self._write(initial)

    def read(self) -> SharedState:
        if self.path is None:
            return self._memory
        stored = json.loads(self.path.read_text())
        return SharedState(
            anchor=epoch_of(datetime.fromisoformat(stored["anchor"])),
            clock_seconds=int(stored["clock_seconds"]),
            extra_send_times=[int(t) for t in stored["extra_send_times"]],
            follow_wall_clock=bool(stored.get("follow_wall_clock", False)),
            deleted_members=[int(m) for m in stored.get("deleted_members", [])],
        )

    def _write(self, state: SharedState) -> None:
        if self.path is None:
            self._memory = state
            return
        payload = {
            "seed": self.seed,
            "anchor": format_timestamp(state.anchor),
            "clock_seconds": state.clock_seconds,
            "extra_send_times": state.extra_send_times,
            "follow_wall_clock": state.follow_wall_clock,
            "deleted_members": state.deleted_members,
        }
        # Write then rename, so a reader in another process never sees half a file.
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(self.path)

    def update(self, change: Callable[[SharedState], object]) -> SharedState:
        """Apply `change` to the current state and store it, as one step across threads and processes."""
        with self._thread_lock:
            if self._file_lock is None:
                state = self.read()
                change(state)
                self._write(state)
                return state
            with self._file_lock:
                state = self.read()
                change(state)
                self._write(state)
                return state
