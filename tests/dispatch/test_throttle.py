"""The throttle, timed from the receiver's side with a running dispatcher.

Only lower bounds are exact: a tick starts base_interval_ms after the previous one ended,
so callbacks `select_size` apart in arrival order are at least that far apart in time.
Upper bounds are generous, for a loaded two-core machine.
"""

from __future__ import annotations

import time

from tests.conftest import set_config
from tests.dispatch.helpers import enqueue_many, timed_tick

# wall-clock scheduling against monotonic arrival stamps: allow a hair of drift
EPSILON_S = 0.01


def _arrivals(receiver, count: int, timeout: float = 10.0) -> list[float]:
    calls = receiver.wait_for(count, timeout=timeout)
    return sorted(c.at for c in calls)


def _enqueue(client, receiver, count: int, path: str = "/t") -> None:
    enqueue_many(client, [{"webhookUrl": receiver.url(path)} for _ in range(count)])


def test_no_more_than_select_size_callbacks_per_interval(client, dispatcher, receiver, store):
    set_config(store, select_size=3, base_interval_ms=400)
    _enqueue(client, receiver, 9)
    started = time.monotonic()
    dispatcher.start()
    try:
        at = _arrivals(receiver, 9)
    finally:
        dispatcher.stop(wait=True)
    assert at[-1] - started < 10
    for i in range(len(at) - 3):
        assert at[i + 3] - at[i] >= 0.4 - EPSILON_S, [round(t - at[0], 3) for t in at]


def test_the_pause_starts_when_the_slowest_callback_ends(client, dispatcher, receiver, store):
    set_config(store, select_size=3, base_interval_ms=400)
    receiver.behave("/t", delay=0.3)
    _enqueue(client, receiver, 6)
    dispatcher.start()
    try:
        at = _arrivals(receiver, 6)
    finally:
        dispatcher.stop(wait=True)
    for i in range(len(at) - 3):
        assert at[i + 3] - at[i] >= 0.3 + 0.4 - EPSILON_S, [round(t - at[0], 3) for t in at]


def test_one_tick_delivers_concurrently(client, dispatcher, receiver, store):
    set_config(store, select_size=5)
    receiver.behave("/t", delay=0.5)
    _enqueue(client, receiver, 5)
    wall = timed_tick(dispatcher)
    at = sorted(c.at for c in receiver.calls())
    assert len(at) == 5
    assert wall < 2.0, f"a tick of five 0.5 s callbacks took {wall:.2f}s"
    assert at[-1] - at[0] < 1.0  # one after the other would take 2 s or more
    assert len(client.get("/api/v1/tasks?status=resolved").json["tasks"]) == 5


def test_a_config_change_applies_to_a_running_dispatcher(client, dispatcher, receiver, store):
    set_config(store, select_size=1, base_interval_ms=1000)
    _enqueue(client, receiver, 8)
    dispatcher.start()
    try:
        receiver.wait_for(1)
        set_config(store, select_size=3, base_interval_ms=100)
        at = _arrivals(receiver, 8)
    finally:
        dispatcher.stop(wait=True)
    offsets = [round(t - at[0], 3) for t in at]
    # The tick after the change was still scheduled with the old interval...
    assert at[1] - at[0] >= 1.0 - EPSILON_S, offsets
    # ...then three at a time, 100 ms apart: under the old config 8 calls take 7 s or more.
    assert at[-1] - at[0] < 5.0, offsets
    assert any(at[i + 2] - at[i] < 0.5 for i in range(1, 6)), offsets


def test_a_running_dispatcher_picks_up_tasks_enqueued_later(client, dispatcher, receiver, store):
    set_config(store, base_interval_ms=50)
    dispatcher.start()
    try:
        time.sleep(0.2)  # a few empty ticks first
        _enqueue(client, receiver, 2, path="/late")
        receiver.wait_for(2, "/late", timeout=10)
    finally:
        dispatcher.stop(wait=True)
    assert len(client.get("/api/v1/tasks?status=resolved").json["tasks"]) == 2
