"""Per-host backpressure end to end, with real receivers (SPEC.md, "Delivery rules"):
receiver A answers every callback 429 with Retry-After 2, receiver B answers 200; tasks
for both are enqueued steadily. B's tasks arrive on time throughout, and A is never called
again within 2 s of a 429 it answered. Once with a dispatcher in this process (both
backends), once with three `scheduler worker` processes on PostgreSQL."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.models import NewTask
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.store import host_limits
from scheduler_core.store.base import Store
from tests.cli.conftest import Processes
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

SECONDS = 8.0
EVERY_S = 0.1  # one task for each receiver this often
LEAD_S = 0.3  # each task is due this long after its enqueue
RETRY_AFTER_S = 2
CLOCK_TOLERANCE_S = 0.1  # clock reads at the receiver and the database


def _feed(store: Store, a: Receiver, b: Receiver) -> dict[str, float]:
    """Enqueue one task for A and one for B every EVERY_S for SECONDS; return each B task's
    expected arrival (time.monotonic()) by id."""
    expected: dict[str, float] = {}
    pace = threading.Event()  # never set: its wait paces the feed
    ends = time.monotonic() + SECONDS
    while time.monotonic() < ends:
        due = datetime.now(UTC) + timedelta(seconds=LEAD_S)
        at = time.monotonic() + LEAD_S
        made = store.enqueue(
            [
                NewTask(webhook_url=a.url("/a"), execute_at=due),
                NewTask(webhook_url=b.url("/b"), execute_at=due),
            ]
        )
        expected[made[1][0].id] = at
        pace.wait(EVERY_S)
    return expected


def _check(a: Receiver, b: Receiver, expected: dict[str, float]) -> None:
    calls_b = b.wait_for(len(expected), "/b", timeout=10)
    lateness = sorted(c.at - expected[c.header("X-Scheduler-Task-Id") or ""] for c in calls_b)
    p50 = statistics.median(lateness)
    p99 = lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))]
    arrivals = sorted(c.at for c in a.calls("/a"))
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    print(f"B lateness p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms over {len(lateness)}")
    print(f"A called {len(arrivals)} times; gaps (s): {[round(g, 3) for g in gaps]}")
    assert p99 < 0.25, lateness[-5:]
    assert len(arrivals) >= 3  # A was tried again after each block
    assert min(gaps) >= RETRY_AFTER_S - CLOCK_TOLERANCE_S, gaps


def _receivers() -> tuple[Receiver, Receiver]:
    a, b = Receiver(), Receiver()
    a.behave("/a", statuses=[429], headers={"Retry-After": str(RETRY_AFTER_S)})
    return a, b


@pytest.mark.slow
def test_a_throttling_host_waits_and_never_slows_another(
    store: Store, plugins: PluginManager
) -> None:
    a, b = _receivers()
    dispatcher = Dispatcher(store, plugins)
    dispatcher.start()
    try:
        expected = _feed(store, a, b)
        _check(a, b, expected)
        [host] = store.list_hosts()
        assert host.host == a.url("/a").split("/")[2]
        assert host.throttled_total == len(a.calls("/a"))
    finally:
        dispatcher.stop(wait=False)
        a.close()
        b.close()


@pytest.mark.slow
def test_three_workers_hold_a_throttling_host_together(
    backend: str, clean_database: str, store: Store, processes: Processes
) -> None:
    if backend != "postgresql":
        pytest.skip("several workers on one database: PostgreSQL")
    a, b = _receivers()
    try:
        for _ in range(3):
            processes.worker(clean_database)
        expected = _feed(store, a, b)
        _check(a, b, expected)
        ready: Callable[[], bool] = lambda: bool(store.list_hosts())  # noqa: E731
        wait_until(ready, timeout=5)
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_a_host_that_recovers_is_raised_step_by_step_then_forgotten(
    store: Store, plugins: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_limits, "FORGET_AT", 3)  # two steps from the floor, not 31
    a = Receiver()
    a.behave("/a", statuses=[429, 200], headers={"Retry-After": "1"})
    dispatcher = Dispatcher(store, plugins)
    dispatcher.start()
    seen: list[tuple[int | None, float | None]] = []
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.1):
            store.enqueue([NewTask(webhook_url=a.url("/a"))])
            seen.extend((h.max_concurrent, h.max_per_second) for h in store.list_hosts())

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        [throttled] = a.wait_for(1, "/a", timeout=5)
        wait_until(lambda: (1, 1.0) in seen, timeout=5)  # halved to the floor
        wait_until(lambda: (2, 2.0) in seen, timeout=5)  # one step after a second of 200s
        wait_until(lambda: not store.list_hosts(), timeout=10)  # unlimited again
        assert (3, 3.0) not in seen  # never kept at FORGET_AT: forgotten instead
        calls = a.calls("/a")
        assert calls[1].at - throttled.at >= 1.0 - CLOCK_TOLERANCE_S  # its Retry-After
    finally:
        stop.set()
        feeder.join()
        dispatcher.stop(wait=False)
        a.close()
