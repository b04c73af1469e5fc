"""Group commit: concurrent enqueues share a transaction, and still behave one by one.

Many threads enqueue at once through one store, so their requests are grouped; each must
get exactly its own tasks back, in order, an idempotency key must create one task whatever
group its requests landed in, and one request the database refuses must fail alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler_core.models import NewTask
from scheduler_core.store import Store
from scheduler_core.store.group_commit import GroupCommit
from tests.support.waiting import wait_until

URL = "http://127.0.0.1:9/hook"
LATER = datetime(2099, 1, 1, tzinfo=UTC)
THREADS = 16


def run_together(work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` on THREADS threads released at once; the results (or exceptions) by i."""
    results: list[Any] = [None] * THREADS
    start = threading.Barrier(THREADS)

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_each_request_gets_its_own_tasks_in_order(store: Store) -> None:
    def enqueue(i: int) -> list[Any]:
        tasks = [
            NewTask(webhook_url=URL, execute_at=LATER, payload={"request": i, "n": n})
            for n in range(i % 4 + 1)
        ]
        return store.enqueue(tasks)

    results = run_together(enqueue)
    ids = set()
    for i, result in enumerate(results):
        assert not isinstance(result, Exception), result
        assert [task.payload for task, _ in result] == [
            {"request": i, "n": n} for n in range(i % 4 + 1)
        ]
        assert all(created for _, created in result)
        for task, _ in result:
            stored = store.get(task.id)
            assert stored is not None and stored.payload == task.payload
            assert stored.created_at == task.created_at and stored.execute_at == LATER
            ids.add(task.id)
    assert len(ids) == sum(i % 4 + 1 for i in range(THREADS))


def test_one_idempotency_key_creates_one_task_across_concurrent_requests(store: Store) -> None:
    results = run_together(
        lambda i: store.enqueue(
            [NewTask(webhook_url=URL, execute_at=LATER, payload=i, idempotency_key="once")]
        )
    )
    assert not any(isinstance(r, Exception) for r in results), results
    tasks = [result[0] for result in results]
    assert len({task.id for task, _ in tasks}) == 1
    assert sum(created for _, created in tasks) == 1
    winner = next(task for task, created in tasks if created)
    assert all(task.payload == winner.payload for task, _ in tasks)


def test_a_request_the_database_refuses_fails_alone(store: Store) -> None:
    # maxRetries 5000 breaks the table's CHECK: the API would refuse it first, the store
    # must still not let it take the rest of its group down.
    def enqueue(i: int) -> list[Any]:
        retries = 5000 if i == 3 else 1
        return store.enqueue([NewTask(webhook_url=URL, execute_at=LATER, max_retries=retries)])

    results = run_together(enqueue)
    assert isinstance(results[3], Exception)
    for i, result in enumerate(results):
        if i != 3:
            assert not isinstance(result, Exception), result
            assert store.get(result[0][0].id) is not None


def test_nothing_is_answered_before_its_commit() -> None:
    committed: list[str] = []
    release = threading.Event()

    def write(requests: list[Any]) -> list[str]:
        release.wait(timeout=30)
        committed.extend(item for request in requests for item in request)
        return [f"stored {','.join(request)}" for request in requests]

    group: GroupCommit[str, str] = GroupCommit(write)
    answers: list[str] = []
    waiter = threading.Thread(target=lambda: answers.append(group.submit(["a"])))
    waiter.start()
    waiter.join(timeout=0.2)
    assert answers == [] and committed == []  # still writing: no answer yet
    release.set()
    waiter.join(timeout=30)
    assert committed == ["a"] and answers == ["stored a"]
    group.close()
    with pytest.raises(Exception, match="closed"):
        group.submit(["b"])


def test_a_refused_group_is_written_again_one_request_at_a_time() -> None:
    # The first write blocks until every other request is queued behind it, so they are
    # sure to form one group; that group's write fails because of one request.
    groups: list[list[str]] = []
    first_in = threading.Event()
    release = threading.Event()

    def write(requests: list[Any]) -> list[str]:
        names = [request[0] for request in requests]
        groups.append(names)
        if names == ["first"]:
            first_in.set()
            release.wait(timeout=30)
        if "bad" in names:
            raise ValueError("refused: bad")
        return [f"stored {name}" for name in names]

    group: GroupCommit[str, str] = GroupCommit(write)
    outcomes: dict[str, Any] = {}

    def submit(name: str) -> None:
        try:
            outcomes[name] = group.submit([name])
        except Exception as exc:
            outcomes[name] = exc

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    assert first_in.wait(timeout=30)
    others = [threading.Thread(target=submit, args=(n,)) for n in ("a", "bad", "b")]
    for thread in others:
        thread.start()
    wait_until(lambda: len(group._waiting) == 3, timeout=30)
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=30)
    assert sorted(groups[1]) == ["a", "b", "bad"]  # one group, refused as a whole
    assert sorted(map(tuple, groups[2:])) == [("a",), ("b",), ("bad",)]  # then one by one
    assert outcomes["first"] == "stored first"
    assert outcomes["a"] == "stored a" and outcomes["b"] == "stored b"
    assert isinstance(outcomes["bad"], ValueError)
    group.close()
