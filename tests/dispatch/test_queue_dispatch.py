"""A running dispatcher serves queues fairly and leaves a paused queue alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.store.base import Store
from tests.dispatch.queues import add_queue, enqueue_in, set_paused
from tests.support.database import TestDatabase
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

THREADS = 4


@pytest.fixture
def narrow_dispatcher(store: Store, plugins: PluginManager) -> Iterator[Dispatcher]:
    """A dispatcher with only THREADS delivery threads, not started yet."""
    dispatcher = Dispatcher(store, plugins, delivery_threads=THREADS)
    yield dispatcher
    dispatcher.stop(wait=True)


def test_a_busy_queue_does_not_starve_a_quiet_one(
    store: Store, db: TestDatabase, receiver: Receiver, narrow_dispatcher: Dispatcher
) -> None:
    # 200 tasks due in "busy", enqueued first and first by name, then 3 in "quiet". Served
    # one queue after the other, "quiet" would wait for all 200 (50 rounds of 4 threads).
    receiver.behave("/busy", delay=0.02)
    add_queue(db, store, "busy")
    add_queue(db, store, "quiet")
    enqueue_in(store, "busy", receiver.url("/busy"), 200)
    enqueue_in(store, "quiet", receiver.url("/quiet"), 3)

    narrow_dispatcher.start()
    receiver.wait_for(3, "/quiet", timeout=30)

    order = [call.path for call in receiver.calls()]
    last_quiet = max(i for i, path in enumerate(order) if path == "/quiet")
    # Each round shares the free threads out between the due queues.
    assert last_quiet < 4 * THREADS, order[: last_quiet + 1]
    assert order.count("/busy") < 200


def test_a_paused_queue_is_not_claimed_and_resumes_where_it_was(
    store: Store, db: TestDatabase, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    add_queue(db, store, "held")
    set_paused(db, "held", True)
    held = enqueue_in(store, "held", receiver.url("/held"), 2)
    dispatcher.start()

    enqueue_in(store, "default", receiver.url("/other"), 1)
    receiver.wait_for(1, "/other", timeout=15)
    later = db.now() + timedelta(seconds=1)
    wait_until(lambda: db.now() >= later, timeout=15)  # two state refreshes at least
    enqueue_in(store, "default", receiver.url("/sentinel"), 1)
    receiver.wait_for(1, "/sentinel", timeout=15)
    assert receiver.calls("/held") == []
    assert {store.get(task_id).status.value for task_id in held} == {"pending"}

    set_paused(db, "held", False)  # read at the next state refresh, within a second
    receiver.wait_for(2, "/held", timeout=15)
    wait_until(
        lambda: {store.get(task_id).status.value for task_id in held} == {"resolved"}, timeout=15
    )


def test_tick_serves_every_queue_within_its_own_select_size(
    store: Store, db: TestDatabase, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    add_queue(db, store, "small", select_size=2)
    enqueue_in(store, "small", receiver.url("/small"), 5)
    enqueue_in(store, "default", receiver.url("/default"), 5)

    dispatcher.tick()

    assert len(receiver.calls("/small")) == 2
    assert len(receiver.calls("/default")) == 5
