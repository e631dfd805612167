"""When to ask again about a Bulk API 2.0 job: every status call is an API call the org pays for."""

from __future__ import annotations

import time
from collections.abc import Callable


class JobPoller:
    """Waits between status calls: an exponential back-off, then, once the job's own progress
    (``numberRecordsProcessed``, which grows while Salesforce works through its internal batches) gives a rate,
    about as long as the rest of the job should take, so a job of a million rows costs a handful of polls
    rather than one every ``backoff_max`` seconds."""

    def __init__(
        self,
        expected: int | None,
        *,
        first: float,
        backoff_max: float = 30.0,
        predicted_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.expected = expected
        self.first = first
        self.backoff_max = backoff_max
        self.predicted_max = predicted_max
        self.clock = clock
        self.polls = 0
        self._start: tuple[float, int] | None = None

    def next_wait(self, processed: int) -> float:
        """Seconds to sleep after a status call that found the job still running with ``processed`` records done."""
        now = self.clock()
        backoff = min(self.first * 2**self.polls, self.backoff_max)
        self.polls += 1
        if self._start is None:
            self._start = (now, processed)
            return backoff
        started_at, started_with = self._start
        if not self.expected or processed <= started_with or now <= started_at:
            return backoff
        rate = (processed - started_with) / (now - started_at)
        # A little past the predicted end, so the next call usually finds the job complete; never below the
        # back-off (a job almost done is asked again soon) and never so long that a stalled job goes unseen.
        remaining = max(self.expected - processed, 0) / rate
        return min(max(remaining * 1.05 + 1.0, backoff), max(self.predicted_max, backoff))
