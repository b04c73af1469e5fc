"""Change notices (scheduler_core/store/changes.py): what wakes a dispatcher at once.

`watch` on a second store over the same database stands for another process: it hears
only what crosses the database (PostgreSQL's NOTIFY, SQLite's data_version), never the
first store's in-process notices.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from scheduler_core.models import DeliveryOutcome, NewTask, RecordedOutcome, RetryDecision
from scheduler_core.store import Store, open_store

QUIET_S = 0.3


class Notices:
    def __init__(self) -> None:
        self.heard: queue.SimpleQueue[str] = queue.SimpleQueue()

    def __call__(self, kind: str) -> None:
        self.heard.put(kind)

    def next(self, timeout: float = 5.0) -> str:
        try:
            return self.heard.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no notice within {timeout}s") from None

    def drain(self, quiet_s: float = QUIET_S) -> list[str]:
        """Every notice until none has come for `quiet_s`."""
        kinds = []
        while True:
            try:
                kinds.append(self.heard.get(timeout=quiet_s))
            except queue.Empty:
                return kinds


@pytest.fixture
def other_process(settings) -> Iterator[tuple[Store, Notices]]:
    other = open_store(settings.database_url, pool_size=1)
    notices = Notices()
    watch = other.watch(notices)
    time.sleep(0.2)  # the listener is connected and listening
    yield other, notices
    watch.close()
    other.close()


def test_an_enqueue_due_now_is_heard_in_the_same_process_at_once(store):
    notices = Notices()
    watch = store.watch(notices)
    try:
        store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x")])
        assert notices.next(timeout=1.0) == "due"
    finally:
        watch.close()


def test_an_enqueue_due_now_is_heard_by_another_process(store, other_process):
    _, notices = other_process
    notices.drain()
    store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x")])
    assert notices.next() in {"due", "unknown"}


def test_a_retry_and_a_config_change_are_heard_by_another_process(store, other_process):
    _, notices = other_process
    [(created, _)] = store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x")])
    store.cancel(created.id)
    notices.drain()
    store.retry(created.id)
    assert notices.next() in {"due", "unknown"}
    notices.drain()
    store.update_config({"select_size": 7})
    assert notices.next() in {"config", "unknown"}


def test_a_failed_attempt_retried_soon_is_heard_by_another_process(store, other_process):
    _, notices = other_process
    store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x")])
    [claimed] = store.claim_due(1, 60_000)
    notices.drain()
    store.record_outcomes(
        [
            RecordedOutcome(
                claimed.id, 1, DeliveryOutcome(ok=False, error="HTTP 500"), RetryDecision(100)
            )
        ]
    )
    assert notices.next() in {"due", "unknown"}


def test_postgresql_notifies_only_for_tasks_due_soon(store, other_process, db):
    if db.dialect != "postgresql":
        pytest.skip("SQLite's data_version changes with every commit; it carries no due time")
    _, notices = other_process
    later = datetime.now(UTC) + timedelta(hours=1)
    notices.drain()
    store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x", execute_at=later)] * 3)
    assert notices.drain() == []
    store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x")] * 3)
    assert notices.drain() == ["due"]  # one notice for the transaction, not one per task
