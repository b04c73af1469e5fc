"""The queue verbs of the store, on each backend: create, replace, read, pause, purge and
remove a queue, its counts, and what wakes dispatchers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler_core.models import DEFAULT_QUEUE, NewTask, TaskFilter, TaskStatus
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.base import QueueConflict, QueueNotFound
from tests.api.helpers import NOWHERE
from tests.support.database import SQLITE_NOW_US

LATER = datetime(2099, 1, 1, tzinfo=UTC)


def enqueue(store, queue: str, count: int = 1, execute_at=None):
    new = [NewTask(NOWHERE, queue=queue, execute_at=execute_at) for _ in range(count)]
    return [task for task, _ in store.enqueue(new)]


def set_status(db, task_id: str, status: str) -> None:
    """Put a task in `status` directly (a running one under a lease an hour long)."""
    db.sql(
        postgresql="UPDATE scheduler_tasks SET status = %s, lease_expires_at = CASE WHEN"
        " %s = 'running' THEN now() + interval '1 hour' END WHERE id = %s",
        sqlite="UPDATE scheduler_tasks SET status = %s, lease_expires_at = CASE WHEN"
        f" %s = 'running' THEN {SQLITE_NOW_US} + 3600000000 END WHERE id = %s",
        params=(status, status, task_id),
    )


def test_a_new_queue_takes_the_defaults_for_every_column_left_out(store):
    info, created = store.put_queue("mail", {"select_size": 7})
    assert created
    assert info.name == "mail"
    assert info.config == RuntimeConfig(select_size=7)
    assert not info.paused
    assert info.counts == dict.fromkeys(TaskStatus, 0)
    assert info.due_backlog == 0
    assert info.created_at == info.updated_at
    assert store.get_config("mail") == RuntimeConfig(select_size=7)


def test_put_replaces_the_whole_config_and_keeps_the_pause_switch(store):
    store.put_queue("mail", {"select_size": 7, "max_retries": 2})
    store.set_queue_paused("mail", True)
    info, created = store.put_queue("mail", {"max_retries": 9})
    assert not created
    assert info.config == RuntimeConfig(max_retries=9)  # select_size back to its default
    assert info.paused
    assert info.updated_at >= info.created_at


def test_list_sorts_by_name_and_counts_each_queue_apart(store):
    for name in ("zeta", "Alpha", "mail"):
        store.put_queue(name, {})
    enqueue(store, "mail", 3)
    enqueue(store, "zeta", 1, execute_at=LATER)
    enqueue(store, DEFAULT_QUEUE, 2)
    queues = {q.name: q for q in store.list_queues()}
    assert [q.name for q in store.list_queues()] == sorted(queues)
    assert set(queues) == {"Alpha", "default", "mail", "zeta"}
    assert queues["mail"].counts[TaskStatus.PENDING] == 3
    assert queues["mail"].due_backlog == 3
    assert queues["zeta"].counts[TaskStatus.PENDING] == 1
    assert queues["zeta"].due_backlog == 0  # due in 2099
    assert queues["default"].counts[TaskStatus.PENDING] == 2
    assert queues["Alpha"].counts == dict.fromkeys(TaskStatus, 0)
    assert store.get_queue("mail") == queues["mail"]


def test_queue_counts_shows_every_queue_with_zeros(store):
    store.put_queue("mail", {})
    store.put_queue("empty", {})
    enqueue(store, "mail", 2)
    counts = {q.queue: q for q in store.queue_counts()}
    assert list(counts) == ["default", "empty", "mail"]
    assert counts["empty"].counts == dict.fromkeys(TaskStatus, 0)
    assert counts["empty"].due_backlog == 0
    assert counts["mail"].counts[TaskStatus.PENDING] == 2
    assert counts["mail"].due_backlog == 2
    assert counts["mail"].oldest_due_age_s >= 0.0


def test_queue_counts_keeps_the_finished_tasks_of_a_removed_queue(store):
    store.put_queue("old", {})
    [task] = enqueue(store, "old", 1, execute_at=LATER)
    store.cancel(task.id)
    store.delete_queue("old")
    counts = {q.queue: q for q in store.queue_counts()}
    assert list(counts) == ["default", "old"]  # every task counted, until retention
    assert counts["old"].counts[TaskStatus.CANCELLED] == 1
    assert "old" not in {q.name for q in store.list_queues()}


def test_pause_and_resume_are_idempotent_and_wake_dispatchers(store):
    store.put_queue("mail", {})
    kinds: list[str] = []
    watch = store.watch(kinds.append)
    try:
        assert store.set_queue_paused("mail", True).paused
        first = store.get_queue("mail").updated_at
        assert store.set_queue_paused("mail", True).paused
        assert store.get_queue("mail").updated_at == first  # nothing changed
        assert not store.set_queue_paused("mail", False).paused
    finally:
        watch.close()
    assert kinds.count("config") >= 3


def test_verbs_on_a_missing_queue_raise_queue_not_found(store):
    for call in (
        lambda: store.get_queue("nope"),
        lambda: store.set_queue_paused("nope", True),
        lambda: store.delete_queue("nope"),
        lambda: store.purge_queue("nope"),
        lambda: store.enqueue([NewTask(NOWHERE, queue="nope")]),
    ):
        with pytest.raises(QueueNotFound) as caught:
            call()
        assert caught.value.args[0] == "nope"
    assert store.list_tasks(TaskFilter(), 10, None)[0] == []


def test_the_default_queue_cannot_be_removed(store):
    with pytest.raises(QueueConflict) as caught:
        store.delete_queue(DEFAULT_QUEUE)
    assert caught.value.details == {"reason": "default_queue"}
    assert store.get_queue(DEFAULT_QUEUE).name == DEFAULT_QUEUE


@pytest.mark.parametrize("status", ["pending", "running", "stale"])
def test_a_queue_holding_work_is_not_removed(store, db, status):
    store.put_queue("mail", {})
    [task] = enqueue(store, "mail")
    set_status(db, task.id, status)
    with pytest.raises(QueueConflict) as caught:
        store.delete_queue("mail")
    counts = {"pending": 0, "running": 0, "stale": 0, status: 1}
    assert caught.value.details == {"reason": "tasks", "counts": counts}
    assert store.get_queue("mail").counts[TaskStatus(status)] == 1


def test_a_queue_a_schedule_enqueues_into_is_not_removed(store, db):
    store.put_queue("mail", {})
    db.sql(
        postgresql="INSERT INTO scheduler_schedules (name, cron, webhook_url, queue)"
        " VALUES ('nightly', '0 3 * * *', 'http://127.0.0.1:9/', 'mail')",
        sqlite="INSERT INTO scheduler_schedules (name, cron, webhook_url, queue, created_at,"
        " updated_at) VALUES ('nightly', '0 3 * * *', 'http://127.0.0.1:9/', 'mail', 0, 0)",
    )
    with pytest.raises(QueueConflict) as caught:
        store.delete_queue("mail")
    assert caught.value.details == {"reason": "schedules", "schedules": ["nightly"]}
    assert store.get_queue("mail")


def test_removing_keeps_finished_tasks_and_returns_the_queue_as_it_was(store):
    store.put_queue("mail", {"select_size": 3})
    [task] = enqueue(store, "mail", execute_at=LATER)
    store.cancel(task.id)
    gone = store.delete_queue("mail")
    assert gone.name == "mail" and gone.config.select_size == 3
    assert gone.counts[TaskStatus.CANCELLED] == 1
    with pytest.raises(QueueNotFound):
        store.get_queue("mail")
    assert store.get(task.id).status is TaskStatus.CANCELLED  # retention deletes it later
    with pytest.raises(QueueNotFound):
        store.get_config("mail")


def test_purge_cancels_pending_and_stale_tasks_of_that_queue_only(store, db):
    store.put_queue("mail", {})
    pending = enqueue(store, "mail", 3, execute_at=LATER)
    [stale, running] = enqueue(store, "mail", 2, execute_at=LATER)
    set_status(db, stale.id, "stale")
    set_status(db, running.id, "running")
    [other] = enqueue(store, DEFAULT_QUEUE, 1, execute_at=LATER)
    assert store.purge_queue("mail") == 4
    assert {store.get(t.id).status for t in [*pending, stale]} == {TaskStatus.CANCELLED}
    assert store.get(running.id).status is TaskStatus.RUNNING  # it finishes
    assert store.get(other.id).status is TaskStatus.PENDING
    assert store.purge_queue("mail") == 0


def test_enqueues_into_several_queues_commit_together(store):
    store.put_queue("a", {})
    store.put_queue("b", {})
    results = store.enqueue([NewTask(NOWHERE, queue=q) for q in ("a", "b", DEFAULT_QUEUE)])
    assert [task.queue for task, _ in results] == ["a", "b", DEFAULT_QUEUE]
    with pytest.raises(QueueNotFound):  # all or nothing
        store.enqueue([NewTask(NOWHERE, queue="a"), NewTask(NOWHERE, queue="gone")])
    assert len(store.list_tasks(TaskFilter(), 10, None)[0]) == 3
