"""POST /api/v1/tasks:retry and /api/v1/tasks:cancel: a verb on every task a filter
matches, in batches, each task as the single-task verb would take it."""

import logging
import threading
from datetime import timedelta

import pytest

from scheduler_core.models import TaskFilter, TaskStatus
from tests.api.held import held_claim
from tests.api.helpers import (
    FUTURE,
    NOWHERE,
    STATUSES,
    all_tasks,
    assert_error,
    enqueue,
    get_task,
    parse_time,
    utc_now,
)
from tests.support.waiting import wait_until

EVERY_STATUS = {"status": list(STATUSES)}


def bulk(client, verb, body, expect=200):
    response = client.post(f"/api/v1/tasks:{verb}", json=body)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def enqueue_array(client, count, **fields):
    body = [{"webhookUrl": NOWHERE, "executeAt": FUTURE, **fields} for _ in range(count)]
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["tasks"]


def statuses_of(store):
    counts = {}
    for task in all_tasks(store):
        counts[task.status.value] = counts.get(task.status.value, 0) + 1
    return counts


# -- routing and validation -------------------------------------------------------------


@pytest.mark.parametrize("verb", ["retry", "cancel"])
def test_the_routes_sit_beside_the_task_routes(client, verb):
    task = enqueue(client, executeAt=FUTURE)
    assert_error(client.get(f"/api/v1/tasks:{verb}"), 405, "method_not_allowed")
    # "/api/v1/tasks/:retry" is a task id path, where POST means nothing.
    assert_error(client.post(f"/api/v1/tasks/:{verb}", json={}), 405, "method_not_allowed")
    assert_error(client.post("/api/v1/tasks:purge", json=EVERY_STATUS), 404, "not_found")
    assert get_task(client, task["id"])["status"] == "pending"  # /tasks/<id> still routes
    assert client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE}).status_code == 201


@pytest.mark.parametrize("verb", ["retry", "cancel"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_schema"),
        ([], "_schema"),
        (["stale"], "_schema"),
        ("stale", "_schema"),
        ({"status": []}, "status"),
        ({"status": "stale"}, "status"),
        ({"status": None}, "status"),
        ({"status": ["stale", "nope"]}, "status"),
        ({"status": [""]}, "status"),
        ({"status": ["STALE"]}, "status"),
        ({"status": [1]}, "status"),
        ({"queue": "x"}, "queue"),
        ({"queue": None}, "queue"),
        ({"status": ["stale"], "ids": ["a"]}, "ids"),
        ({"createdBefore": "2030-01-01T00:00:00"}, "createdBefore"),
        ({"createdAfter": "yesterday"}, "createdAfter"),
        ({"createdAfter": 0}, "createdAfter"),
        (
            {"createdBefore": "2030-01-01T00:00:00Z", "createdAfter": "2030-01-01T00:00:00Z"},
            "createdBefore",
        ),
        (
            {"createdBefore": "2020-01-01T00:00:00Z", "createdAfter": "2030-01-01T00:00:00Z"},
            "createdBefore",
        ),
    ],
)
def test_bad_filters_are_400_and_change_nothing(client, tasks_by_status, verb, body, field):
    error = assert_error(client.post(f"/api/v1/tasks:{verb}", json=body), 400, "validation_error")
    assert field in error["details"], error
    for status, task in tasks_by_status.items():
        assert get_task(client, task["id"]) == task, status


def test_each_bad_status_is_named_by_its_index(client):
    error = assert_error(
        client.post("/api/v1/tasks:cancel", json={"status": ["stale", "nope", "pending", ""]}),
        400,
        "validation_error",
    )
    assert set(error["details"]["status"]) == {"1", "3"}
    assert "'nope'" in error["details"]["status"]["1"][0]
    assert "'nope'" in error["message"]


def test_another_queue_is_refused_by_name(client):
    error = assert_error(
        client.post("/api/v1/tasks:retry", json={"queue": "x"}), 400, "validation_error"
    )
    assert error["details"] == {"queue": ["No queue named 'x'."]}
    assert "No queue named 'x'." in error["message"]


def test_an_empty_body_is_invalid_json(client):
    assert_error(client.post("/api/v1/tasks:cancel", data=b""), 400, "invalid_json")


# -- cancel ---------------------------------------------------------------------------


def test_cancel_takes_pending_and_stale_only(client, tasks_by_status):
    assert bulk(client, "cancel", EVERY_STATUS) == {"count": 2}
    after = {status: get_task(client, t["id"]) for status, t in tasks_by_status.items()}
    assert after["pending"]["status"] == after["stale"]["status"] == "cancelled"
    for status in ("running", "resolved", "cancelled"):  # untouched, updatedAt and all
        assert after[status] == tasks_by_status[status], status
    assert after["stale"]["lastStatusCode"] == 500  # the history stays
    assert bulk(client, "cancel", EVERY_STATUS) == {"count": 0}  # cancelled: not counted


def test_cancel_by_status_only_takes_those(client, tasks_by_status):
    assert bulk(client, "cancel", {"status": ["stale", "running"]}) == {"count": 1}
    assert get_task(client, tasks_by_status["stale"]["id"])["status"] == "cancelled"
    assert get_task(client, tasks_by_status["pending"]["id"])["status"] == "pending"
    assert get_task(client, tasks_by_status["running"]["id"])["status"] == "running"


def test_a_cancelled_task_is_never_called(client, dispatcher, receiver):
    tasks = [enqueue(client, receiver.url(f"/t{n}")) for n in range(3)]
    assert bulk(client, "cancel", {"queue": "default"}) == {"count": 3}
    dispatcher.tick()
    assert receiver.calls() == []
    assert {get_task(client, t["id"])["status"] for t in tasks} == {"cancelled"}


def test_the_creation_range_picks_tasks(client, db):
    old = enqueue_array(client, 3)
    cut = db.now() + timedelta(milliseconds=5)
    wait_until(lambda: db.now() > cut, timeout=5, message="for the clock to move on")
    new = enqueue_array(client, 2)
    assert parse_time(old[-1]["createdAt"]) < cut <= parse_time(new[0]["createdAt"])
    stamp = cut.isoformat()
    assert bulk(client, "cancel", {"createdBefore": stamp, "status": ["pending"]}) == {"count": 3}
    assert {get_task(client, t["id"])["status"] for t in old} == {"cancelled"}
    assert {get_task(client, t["id"])["status"] for t in new} == {"pending"}
    assert bulk(client, "retry", {"createdAfter": stamp}) == {"count": 0}  # none cancelled
    assert bulk(client, "retry", {"createdBefore": stamp}) == {"count": 3}
    assert {get_task(client, t["id"])["status"] for t in old} == {"pending"}


def test_bounds_far_out_take_everything_on_their_side(client):
    created = enqueue_array(client, 3)
    body = {
        "createdAfter": "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
        "createdBefore": "9999-12-31T23:59:59-05:00",  # after 9999 in UTC
    }
    assert bulk(client, "cancel", body) == {"count": 3}
    assert bulk(client, "retry", {"createdBefore": "0001-01-01T00:00:00Z"}) == {"count": 0}
    assert bulk(client, "retry", {"createdBefore": "2001-01-01T00:00:00-18:38"}) == {"count": 0}
    assert bulk(client, "retry", {"createdAfter": "9999-01-01T00:00:00Z"}) == {"count": 0}
    assert {get_task(client, t["id"])["status"] for t in created} == {"cancelled"}


def test_cancel_across_several_batches(client, store):
    """1,201 tasks: three batches of the default 500, every one cancelled."""
    created = enqueue_array(client, 1000) + enqueue_array(client, 201)
    assert bulk(client, "cancel", {"status": ["pending"]}) == {"count": len(created)}
    assert statuses_of(store) == {"cancelled": len(created)}


@pytest.mark.parametrize("batch_size", [1, 2, 7, 500])
def test_store_batches_take_every_match_once(client, store, tasks_by_status, batch_size):
    more = enqueue_array(client, 9)
    for task in more[::3]:
        assert client.delete(f"/api/v1/tasks/{task['id']}").status_code == 200
    everything = TaskFilter()
    assert store.bulk_cancel(everything, batch_size=batch_size) == 1 + 1 + 6  # pending+stale
    assert store.bulk_retry(everything, batch_size=batch_size) == 2 + 10  # every cancelled
    counts = statuses_of(store)
    assert counts == {"pending": 12, "running": 1, "resolved": 1}


def test_a_claim_during_a_bulk_cancel_is_left_running(client, store, db):
    """Tasks a dispatcher claims while the bulk cancel runs (claimed after it read them)
    stay running: the cancel checks each task's state as it writes it."""
    created = enqueue_array(client, 10)
    claimed = [t["id"] for t in created[2:5]]
    counts = []
    with held_claim(db, claimed) as claim:
        worker = threading.Thread(
            target=lambda: counts.append(store.bulk_cancel(TaskFilter(), batch_size=4))
        )
        worker.start()
        claim.wait_for_a_waiter()
        assert worker.is_alive()
    worker.join(30)
    assert counts == [7]
    for task in created:
        expected = "running" if task["id"] in claimed else "cancelled"
        assert get_task(client, task["id"])["status"] == expected


def test_single_cancels_during_a_bulk_cancel(client, store):
    created = enqueue_array(client, 300)
    counts, errors = [], []

    def run_bulk():
        try:
            counts.append(store.bulk_cancel(TaskFilter(), batch_size=10))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=run_bulk)
    worker.start()
    singles = created[::-1][:60]  # the newest: the bulk reaches them last
    for task in singles:
        response = client.delete(f"/api/v1/tasks/{task['id']}")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["status"] == "cancelled"
    worker.join(60)
    assert errors == []
    [count] = counts
    assert len(created) - len(singles) <= count <= len(created)
    assert statuses_of(store) == {"cancelled": len(created)}
    assert store.bulk_cancel(TaskFilter()) == 0


# -- retry ----------------------------------------------------------------------------


def test_retry_takes_stale_and_cancelled_only(client, tasks_by_status):
    before = utc_now()
    assert bulk(client, "retry", EVERY_STATUS) == {"count": 2}
    after = {status: get_task(client, t["id"]) for status, t in tasks_by_status.items()}
    for status in ("stale", "cancelled"):
        task = after[status]
        assert task["status"] == "pending", status
        assert task["attempts"] == tasks_by_status[status]["attempts"]  # kept
        assert abs(parse_time(task["nextAttemptAt"]) - before) < timedelta(seconds=30)
        assert task["executeAt"] == tasks_by_status[status]["executeAt"]
    for status in ("pending", "running", "resolved"):
        assert after[status] == tasks_by_status[status], status
    assert bulk(client, "retry", EVERY_STATUS) == {"count": 0}


def test_retry_grants_a_fresh_budget(client, dispatcher, receiver, fast_retries):
    receiver.behave("/down", statuses=[500])
    tasks = [enqueue(client, receiver.url("/down"), maxRetries=0) for _ in range(3)]
    dispatcher.tick()
    assert {get_task(client, t["id"])["status"] for t in tasks} == {"stale"}
    assert bulk(client, "retry", {"status": ["stale"]}) == {"count": 3}
    dispatcher.tick()  # one more try each (maxRetries=0: one per budget), then stale again
    dispatcher.tick()
    for task in tasks:
        again = get_task(client, task["id"])
        assert (again["status"], again["attempts"]) == ("stale", 2)
    assert len(receiver.calls("/down")) == 6


def test_a_retried_task_is_called(client, dispatcher, receiver):
    task = enqueue(client, receiver.url("/back"), executeAt=FUTURE)
    assert client.delete(f"/api/v1/tasks/{task['id']}").status_code == 200
    assert bulk(client, "retry", {"status": ["cancelled"], "queue": "default"}) == {"count": 1}
    dispatcher.tick()
    [call] = receiver.calls("/back")
    assert call.json()["taskId"] == task["id"]


def test_retry_across_several_batches(client, store):
    created = enqueue_array(client, 1000) + enqueue_array(client, 1)
    assert bulk(client, "cancel", {"queue": "default"}) == {"count": 1001}
    assert store.bulk_retry(TaskFilter(statuses=frozenset({TaskStatus.CANCELLED})), 300) == 1001
    assert statuses_of(store) == {"pending": len(created)}


def test_one_log_line_per_request_with_the_filter_and_count(client, caplog):
    enqueue_array(client, 3)
    with caplog.at_level(logging.INFO, logger="scheduler_core.api.edits"):
        body = {"status": ["pending"], "queue": "default", "createdAfter": "2001-01-01T00:00:00Z"}
        assert bulk(client, "cancel", body) == {"count": 3}
    [line] = [r.getMessage() for r in caplog.records if r.name == "scheduler_core.api.edits"]
    assert "3 tasks cancelled" in line
    assert "status=pending" in line and "queue=default" in line
    assert "createdAfter=2001-01-01T00:00:00Z" in line
