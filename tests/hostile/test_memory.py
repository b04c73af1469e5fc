"""Tick after tick against a mix of hostile receivers, neither memory nor threads grow.

Python's traced memory (tracemalloc) and the process's live threads are sampled after
every tick; the last ten ticks may not rise above the first ten by more than a margin.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from scheduler_core.models import NewTask
from tests.conftest import set_config
from tests.hostile import servers as hs
from tests.plugins.rawservers import Huge

pytestmark = pytest.mark.slow  # dozens of ticks against hostile receivers

TIMEOUT_MS = 200
WARMUP_TICKS = 3
TICKS = 30
WINDOW = 10
MEMORY_MARGIN_BYTES = 1024 * 1024
THREAD_MARGIN = 4


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_memory_and_threads_stay_flat_tick_after_tick(
    store, dispatcher, receiver, hostile, certificate, measure
):
    set_config(
        store,
        http_callback_timeout_ms=TIMEOUT_MS,
        retry_backoff_ms=3_600_000,  # a failed task waits: every tick delivers new ones
        retry_backoff_max_ms=3_600_000,
    )
    urls = [
        hostile(hs.TlsServer(*certificate)).url(),
        receiver.url("/plain").replace("http://", "https://"),
        hostile(hs.HangUntilHangup()).url().replace("http://", "https://"),
        hostile(hs.TlsHandshakeTrickler(every=0.02)).url(),
        hostile(hs.ResetOnAccept()).url(),
        hostile(hs.ResetAfterRequest()).url(),
        hostile(hs.HalfStatusLine()).url(),
        hostile(hs.EndlessRedirect()).url(),
        hostile(hs.HeaderFlood()).url(),
        hostile(hs.GiantHeaders(lines=4, size=30_000)).url(),
        hostile(hs.EndlessHeaderLine()).url(),
        hostile(hs.SlowEndlessHeaders(every=0.02)).url(),
        hostile(hs.EndlessChunked(every=0.0)).url(),
        hostile(hs.EndlessChunked(every=0.02, chunk_size=64)).url(),
        hostile(hs.HangUntilHangup()).url(),
        hostile(Huge(status=500, size=2 * 1024 * 1024)).url(),
        receiver.url("/fine"),
    ]
    quiet = logging.getLogger("scheduler_core")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # captured log records would grow on their own
    memory: list[int] = []
    threads: list[int] = []
    walls: list[float] = []
    try:
        for number in range(WARMUP_TICKS + TICKS):
            if number == WARMUP_TICKS:
                gc.collect()
                tracemalloc.start()
                rss_start = _rss_bytes()
            store.enqueue([NewTask(webhook_url=url) for url in urls])
            started = time.monotonic()
            dispatcher.tick()
            walls.append(time.monotonic() - started)
            if number >= WARMUP_TICKS:
                gc.collect()
                memory.append(tracemalloc.get_traced_memory()[0])
                threads.append(threading.active_count())
        _, peak = tracemalloc.get_traced_memory()
        rss_end = _rss_bytes()
    finally:
        tracemalloc.stop()
        quiet.setLevel(level)

    first, last = memory[:WINDOW], memory[-WINDOW:]
    measure("traced_first10_max_kib", max(first) // 1024)
    measure("traced_last10_max_kib", max(last) // 1024)
    measure("traced_peak_kib", peak // 1024)
    measure("threads_first10_max", max(threads[:WINDOW]))
    measure("threads_last10_max", max(threads[-WINDOW:]))
    measure("rss_start_mib", round(rss_start / 2**20, 1))
    measure("rss_end_mib", round(rss_end / 2**20, 1))
    measure("tick_wall_max_s", round(max(walls), 3))
    assert max(last) <= max(first) + MEMORY_MARGIN_BYTES, (first, last)
    assert max(threads[-WINDOW:]) <= max(threads[:WINDOW]) + THREAD_MARGIN, threads
    assert max(walls) <= TIMEOUT_MS / 1000 + 1.5, walls


def test_threads_stay_bounded_by_the_delivery_pool_at_select_size_10000(
    client, store, plugins, receiver
):
    """select_size is a limit, not a thread count: 400 due tasks with select_size 10,000
    run on the dispatcher's bounded pool of delivery threads."""
    from scheduler_core.dispatcher import Dispatcher
    from tests.dispatch.helpers import enqueue_many, task
    from tests.support.waiting import wait_until

    set_config(store, select_size=10_000, base_interval_ms=100)
    receiver.behave("/slow", delay=0.3)
    dispatcher = Dispatcher(store, plugins, delivery_threads=16)
    created = enqueue_many(client, [{"webhookUrl": receiver.url("/slow")}] * 400)
    counts: list[int] = []
    dispatcher.start()
    try:
        while len(receiver.calls("/slow")) < 400:
            # The receiver's own handler threads live in this process too: count ours.
            counts.append(sum(t.name == "deliver" for t in threading.enumerate()))
            assert len(counts) < 3000, "the tasks were not delivered"
            time.sleep(0.01)
        wait_until(lambda: task(client, created[-1]["id"])["status"] == "resolved")
    finally:
        dispatcher.stop(wait=True)
    assert max(counts) == 16, max(counts)
