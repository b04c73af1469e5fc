"""Removing a queue while tasks are enqueued into it: never a pending task left in a queue
that no longer exists. The removal checks and deletes under the row's lock; an enqueue
holds the rows of its queues from its check to its commit (store/queues.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from scheduler_core.models import NewTask, TaskFilter, TaskStatus
from scheduler_core.store.base import QueueConflict, QueueNotFound
from tests.api.helpers import NOWHERE, task_count
from tests.support.waiting import wait_until

ROUNDS = 25


def pending_in(store, queue: str) -> int:
    tasks, _ = store.list_tasks(
        TaskFilter(statuses=frozenset({TaskStatus.PENDING}), queue=queue), 1000, None
    )
    return len(tasks)


def test_a_removal_racing_enqueues_never_strands_a_pending_task(store):
    """Each round: a removal and two enqueues (one alone, one beside a default-queue task)
    started together. Whatever wins, either the queue is still there, or none of its
    tasks is pending and the refused enqueue stored nothing at all."""
    outcomes = {"removed": 0, "refused": 0}
    with ThreadPoolExecutor(3) as pool:
        for round_ in range(ROUNDS):
            name = f"race-{round_}"
            store.put_queue(name, {})
            before = task_count(store)
            start = threading.Barrier(3)

            def remove(name: str = name, start: threading.Barrier = start) -> str:
                start.wait()
                try:
                    store.delete_queue(name)
                except QueueConflict:
                    return "refused"
                return "removed"

            def add(tasks: list[NewTask], start: threading.Barrier = start) -> int:
                start.wait()
                try:
                    return len(store.enqueue(tasks))
                except QueueNotFound:
                    return 0

            removal = pool.submit(remove)
            alone = pool.submit(add, [NewTask(NOWHERE, queue=name)])
            mixed = pool.submit(add, [NewTask(NOWHERE), NewTask(NOWHERE, queue=name)])
            outcome, stored = removal.result(30), alone.result(30) + mixed.result(30)
            outcomes[outcome] += 1
            exists = name in {q.name for q in store.list_queues()}
            assert exists == (outcome == "refused")
            if not exists:
                assert pending_in(store, name) == 0
            else:
                assert pending_in(store, name) >= 1
            # An enqueue refused stored nothing, its default-queue task included.
            assert task_count(store) - before == stored
    assert sum(outcomes.values()) == ROUNDS


@pytest.fixture
def pg_conn(backend, database_url):
    if backend != "postgresql":
        pytest.skip("the lock waits are PostgreSQL's to observe")
    conn = psycopg2.connect(database_url)
    yield conn
    conn.rollback()
    conn.close()


def _waiting_for_a_lock(database_url: str, clause: str) -> bool:
    """Whether a statement holding `clause` waits for a row lock."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND query LIKE %s",
            (f"%{clause}%",),
        )
        waiting = cur.fetchone()[0] > 0
    conn.close()
    return waiting


def test_a_removal_waits_for_an_enqueue_in_flight_then_refuses(store, pg_conn, database_url):
    store.put_queue("mail", {})
    cur = pg_conn.cursor()
    # An enqueue's transaction, held open between its check and its commit.
    cur.execute(store.q["lock_queues_for_enqueue"], {"names": ["mail"]})
    cur.execute(
        "INSERT INTO scheduler_tasks (id, webhook_url, queue, execute_at, next_attempt_at)"
        " VALUES (gen_random_uuid(), %s, 'mail', now(), now())",
        (NOWHERE,),
    )
    with ThreadPoolExecutor(1) as pool:
        removal = pool.submit(store.delete_queue, "mail")
        try:
            wait_until(
                lambda: _waiting_for_a_lock(database_url, "FOR UPDATE"),
                message="the removal never waited for the enqueue's lock",
            )
            assert not removal.done()
        finally:
            pg_conn.commit()
        with pytest.raises(QueueConflict) as caught:
            removal.result(30)
    assert caught.value.details["counts"]["pending"] == 1
    assert store.get_queue("mail").counts[TaskStatus.PENDING] == 1


def test_an_enqueue_waits_for_a_removal_in_flight_then_stores_nothing(store, pg_conn, database_url):
    store.put_queue("mail", {})
    cur = pg_conn.cursor()
    # A removal's transaction, held open after its check and delete.
    cur.execute(store.q["lock_queue"], {"queue": "mail"})
    cur.execute(store.q["delete_queue"], {"queue": "mail"})
    with ThreadPoolExecutor(1) as pool:
        enqueue = pool.submit(store.enqueue, [NewTask(NOWHERE), NewTask(NOWHERE, queue="mail")])
        try:
            wait_until(
                lambda: _waiting_for_a_lock(database_url, "FOR KEY SHARE"),
                message="the enqueue never waited for the removal's lock",
            )
            assert not enqueue.done()
        finally:
            pg_conn.commit()
        with pytest.raises(QueueNotFound):
            enqueue.result(30)
    assert store.list_tasks(TaskFilter(), 10, None)[0] == []
