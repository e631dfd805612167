"""How often a Bulk API 2.0 job is asked for its status (each ask is an API call)."""

from __future__ import annotations

import pytest

from campaign_pipeline.salesforce.bulk_polling import JobPoller


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_progress_the_waits_back_off_to_the_cap():
    clock = Clock()
    poller = JobPoller(None, first=0.5, backoff_max=4.0, clock=clock)
    waits = []
    for _ in range(6):
        waits.append(poller.next_wait(0))
        clock.now += waits[-1]
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_with_progress_it_waits_about_as_long_as_the_rest_of_the_job_takes():
    clock = Clock()
    poller = JobPoller(1_000_000, first=0.05, backoff_max=30.0, predicted_max=600.0, clock=clock)
    assert poller.next_wait(0) == 0.05
    clock.now += 10.0  # 10,000 records in 10 s: the remaining 990,000 take 990 s, capped at 600
    assert poller.next_wait(10_000) == 600.0
    clock.now += 600.0  # 610,000 done after 610 s: 390 s to go, and a little more so the next ask finds it done
    assert poller.next_wait(610_000) == pytest.approx(390 * 1.05 + 1.0)


def test_an_almost_finished_job_still_waits_the_back_off():
    clock = Clock()
    poller = JobPoller(100, first=2.0, backoff_max=30.0, clock=clock)
    poller.next_wait(0)
    clock.now += 2.0
    # 99 of 100 done: the prediction (about 1 s) is below the back-off (4 s), the floor of every wait.
    assert poller.next_wait(99) == 4.0


def test_a_stalled_job_falls_back_to_the_back_off():
    clock = Clock()
    poller = JobPoller(50_000, first=1.0, backoff_max=30.0, clock=clock)
    poller.next_wait(20_000)
    clock.now += 60.0
    assert poller.next_wait(20_000) == 2.0  # no records processed since: no rate to predict from
