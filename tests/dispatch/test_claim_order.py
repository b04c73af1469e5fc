"""Which due tasks a tick claims, and in what order."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import set_config
from tests.dispatch.helpers import enqueue, enqueue_many, task, ts
from tests.support.waiting import wait_until


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _paths(receiver) -> list[str]:
    return [call.path for call in receiver.calls()]


def test_never_failed_tasks_go_before_failed_ones_due_earlier(client, dispatcher, receiver, store):
    set_config(store, select_size=1, retry_backoff_ms=0)
    receiver.behave("/failed", statuses=[500, 200])
    failed = enqueue(client, receiver.url("/failed"))
    dispatcher.tick()
    failed_now = task(client, failed["id"])
    assert failed_now["status"] == "pending" and failed_now["lastStatusCode"] == 500

    fresh = enqueue(client, receiver.url("/fresh"))
    # The failed task has been due for longer than the fresh one...
    assert ts(failed_now["nextAttemptAt"]) < ts(fresh["executeAt"])

    dispatcher.tick()
    # ...but the task that never failed goes first.
    assert _paths(receiver) == ["/failed", "/fresh"]
    assert task(client, failed["id"])["status"] == "pending"

    dispatcher.tick()
    assert _paths(receiver) == ["/failed", "/fresh", "/failed"]
    assert task(client, failed["id"])["status"] == "resolved"


def test_failed_tasks_go_in_order_of_next_attempt(client, dispatcher, receiver, store, db):
    set_config(store, select_size=1, retry_backoff_ms=0)
    now = db.now()
    receiver.behave("/x", statuses=[500, 200])
    receiver.behave("/y", statuses=[500, 200])
    # y is created first but x is due first, so x fails first and is due again first.
    y = enqueue(client, receiver.url("/y"), executeAt=_iso(now - timedelta(seconds=10)))
    x = enqueue(client, receiver.url("/x"), executeAt=_iso(now - timedelta(seconds=20)))
    dispatcher.tick()
    dispatcher.tick()
    assert ts(task(client, x["id"])["nextAttemptAt"]) < ts(task(client, y["id"])["nextAttemptAt"])
    dispatcher.tick()
    dispatcher.tick()
    assert _paths(receiver) == ["/x", "/y", "/x", "/y"]
    assert task(client, x["id"])["status"] == task(client, y["id"])["status"] == "resolved"


def test_due_tasks_go_in_order_of_execute_at(client, dispatcher, receiver, store, db):
    set_config(store, select_size=1)
    now = db.now()
    for path, seconds_ago in [("/ten", 10), ("/thirty", 30), ("/twenty", 20), ("/now", 0)]:
        enqueue(client, receiver.url(path), executeAt=_iso(now - timedelta(seconds=seconds_ago)))
    for _ in range(4):
        dispatcher.tick()
    assert _paths(receiver) == ["/thirty", "/twenty", "/ten", "/now"]


def test_tasks_due_at_the_same_time_go_first_in_first_out(client, dispatcher, receiver, store, db):
    set_config(store, select_size=1)
    when = _iso(db.now() - timedelta(seconds=1))
    paths = [f"/fifo{i}" for i in range(6)]
    created = enqueue_many(
        client, [{"webhookUrl": receiver.url(p), "executeAt": when} for p in paths]
    )
    assert len({t["executeAt"] for t in created}) == 1
    for _ in paths:
        dispatcher.tick()
    assert _paths(receiver) == paths


def test_a_future_task_waits_until_due_by_the_database_clock(client, dispatcher, receiver, db):
    due = db.now() + timedelta(seconds=1.5)
    created = enqueue(client, receiver.url("/later"), executeAt=_iso(due))

    dispatcher.tick()
    assert receiver.calls() == []
    assert task(client, created["id"])["status"] == "pending"
    assert task(client, created["id"])["attempts"] == 0

    wait_until(lambda: db.now() >= due, timeout=10)
    dispatcher.tick()
    [call] = receiver.wait_for(1, "/later")
    assert call.json()["taskId"] == created["id"]
    assert task(client, created["id"])["status"] == "resolved"


def test_select_size_caps_one_tick(client, dispatcher, receiver, store):
    set_config(store, select_size=3)
    enqueue_many(client, [{"webhookUrl": receiver.url(f"/cap{i}")} for i in range(7)])

    def pending() -> int:
        return len(client.get("/api/v1/tasks?status=pending").json["tasks"])

    seen = []
    for _ in range(3):
        dispatcher.tick()
        seen.append((len(receiver.calls()), pending()))
    assert seen == [(3, 4), (6, 1), (7, 0)]
    dispatcher.tick()
    assert len(receiver.calls()) == 7
