"""Leases: a running task belongs to one dispatcher until its lease runs out."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.models import NewTask
from scheduler_core.store import open_store
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task
from tests.support.waiting import wait_until

MS = timedelta(milliseconds=1)


def test_a_delivering_task_is_running_under_a_lease_of_timeout_plus_5s(
    client, dispatcher, receiver, store, db
):
    set_config(store, http_callback_timeout_ms=2000)
    receiver.behave("/slow", delay=1.0)
    created = enqueue(client, receiver.url("/slow"))
    ticking = threading.Thread(target=dispatcher.tick)
    ticking.start()
    try:
        receiver.wait_for(1, "/slow")
        row = db.task_row(created["id"])
        lease_ms = (row["lease_expires_at"] - row["updated_at"]) / MS
        remaining_ms = (row["lease_expires_at"] - db.now()) / MS
        assert row["status"] == "running"
        assert lease_ms == 7000
        assert 5000 < remaining_ms <= 7000
        shown = task(client, created["id"])
        assert shown["status"] == "running"
        assert shown["attempts"] == 1
        # A running task cannot be cancelled from under its dispatcher.
        assert client.delete(f"/api/v1/tasks/{created['id']}").status_code == 409
    finally:
        ticking.join(10)
    row = db.task_row(created["id"])
    assert (row["status"], row["lease_expires_at"]) == ("resolved", None)


def test_a_leased_task_is_not_claimed_by_another_dispatcher(
    client, dispatcher, receiver, store, plugins, settings
):
    receiver.behave("/slow", delay=1.0)
    created = enqueue(client, receiver.url("/slow"))
    ticking = threading.Thread(target=dispatcher.tick)
    ticking.start()
    other_store = open_store(settings.database_url, pool_size=2)
    other = Dispatcher(other_store, plugins)
    try:
        receiver.wait_for(1, "/slow")
        other.tick()
        other.tick()
    finally:
        ticking.join(10)
        other.stop()
        other_store.close()
    assert len(receiver.calls("/slow")) == 1
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["attempts"] == 1


def test_concurrent_claims_never_share_a_task(store, settings, db):
    """Two stores on one database (PostgreSQL: two pools; SQLite: two stores on one file)
    claim from threads at once: every task is claimed exactly once."""
    created = store.enqueue([NewTask(webhook_url=f"http://127.0.0.1:9/{i}") for i in range(200)])
    all_ids = {t.id for t, _ in created}
    stores = [open_store(settings.database_url, pool_size=1) for _ in range(2)]
    claimed: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim(index: int) -> None:
        try:
            start.wait(5)
            while True:
                batch = stores[index].claim_due(50, 10_000)
                if not batch:
                    return
                claimed[index].extend(t.id for t in batch)
                assert all(t.attempt == 1 for t in batch)
        except BaseException as exc:  # report it in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for s in stores:
            s.close()
    assert not errors, errors
    first, second = claimed
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert not set(first) & set(second)
    assert set(first) | set(second) == all_ids
    assert len(first) + len(second) == 200
    # In the database too: each task is running on its first attempt, recorded once.
    assert db.execute(
        "SELECT count(*) FROM scheduler_tasks WHERE status = 'running' AND attempts = 1"
    ) == [(200,)]
    assert db.execute("SELECT count(*), count(DISTINCT task_id) FROM scheduler_attempts") == [
        (200, 200)
    ]


def test_an_expired_lease_is_reclaimed_and_delivered_again(client, dispatcher, receiver, store, db):
    created = enqueue(client, receiver.url("/again"))
    # A dispatcher claims the task and dies before it records anything.
    [lost] = store.claim_due(10, 60_000)
    assert lost.id == created["id"] and lost.attempt == 1

    dispatcher.tick()  # the lease still holds
    assert receiver.calls("/again") == []
    assert task(client, created["id"])["status"] == "running"

    db.expire_lease(created["id"])
    dispatcher.tick()
    [call] = receiver.wait_for(1, "/again")
    assert call.header("X-Scheduler-Attempt") == "2"
    assert call.json()["attempt"] == 2
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["attempts"] == 2
    first, second = attempts(client, created["id"])
    assert first["attempt"] == 1
    assert "lease expired" in first["error"]
    assert first["finishedAt"] is not None
    assert (first["outcome"], first["durationMs"]) == ("lost", None)  # unknown, not 0
    assert (second["attempt"], second["statusCode"], second["error"]) == (2, 200, None)


@pytest.mark.slow
def test_a_late_outcome_of_a_lost_attempt_does_not_disturb_the_new_one(
    client, dispatcher, receiver, store, plugins, settings, db
):
    set_config(store, http_callback_timeout_ms=5000)
    receiver.behave("/p", statuses=[500, 200], delay=1.0)
    created = enqueue(client, receiver.url("/p"))
    first = threading.Thread(target=dispatcher.tick)
    first.start()
    other_store = open_store(settings.database_url, pool_size=2)
    others = [Dispatcher(other_store, plugins) for _ in range(2)]
    second = threading.Thread(target=others[0].tick)
    try:
        receiver.wait_for(1, "/p")
        receiver.behave("/p", statuses=[500, 200], delay=3.0)  # the next call outlives the first
        db.expire_lease(created["id"])
        second.start()
        receiver.wait_for(2, "/p")
        first.join(10)
        # The first dispatcher's 500 came too late to count: attempt 2 is still running.
        current = task(client, created["id"])
        assert (current["status"], current["attempts"]) == ("running", 2)
        others[1].tick()
        assert len(receiver.calls("/p")) == 2
        second.join(10)
    finally:
        first.join(10)
        if second.is_alive():
            second.join(10)
        for other in others:
            other.stop()
        other_store.close()
    after = task(client, created["id"])
    assert (after["status"], after["attempts"], after["lastStatusCode"]) == ("resolved", 2, 200)
    assert [c.header("X-Scheduler-Attempt") for c in receiver.calls("/p")] == ["1", "2"]


def test_an_expired_lease_without_budget_left_makes_the_task_stale(
    client, dispatcher, receiver, store, db
):
    created = enqueue(client, receiver.url("/never"), maxRetries=0)
    [lost] = store.claim_due(10, 60_000)
    assert lost.id == created["id"]
    db.expire_lease(created["id"])
    dispatcher.tick()
    dispatcher.tick()
    assert receiver.calls("/never") == []
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["attempts"] == 1
    assert "lease expired" in after["lastError"]


def test_an_expired_lease_counts_against_the_config_budget(client, dispatcher, receiver, store, db):
    set_config(store, max_retries=1, retry_backoff_ms=0)
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"))
    store.claim_due(10, 60_000)  # attempt 1, lost
    db.expire_lease(created["id"])
    dispatcher.tick()  # attempt 2 fails: no budget left
    dispatcher.tick()
    wait_until(lambda: task(client, created["id"])["status"] == "stale", timeout=5)
    assert [c.header("X-Scheduler-Attempt") for c in receiver.calls("/down")] == ["2"]
    assert task(client, created["id"])["attempts"] == 2
