"""DELETE /api/v1/tasks/{id} (cancel) and POST /api/v1/tasks/{id}/retry."""

import uuid
from datetime import timedelta

import pytest

from tests.api.helpers import (
    FUTURE,
    assert_error,
    enqueue,
    get_task,
    parse_time,
    utc_now,
)
from tests.conftest import set_config


def cancel(client, task_id):
    return client.delete(f"/api/v1/tasks/{task_id}")


def retry(client, task_id):
    return client.post(f"/api/v1/tasks/{task_id}/retry")


def attempts_of(client, task_id):
    response = client.get(f"/api/v1/tasks/{task_id}/attempts")
    assert response.status_code == 200
    return response.get_json()["attempts"]


# -- cancel ---------------------------------------------------------------------------


def test_cancel_a_pending_task(client, dispatcher, receiver):
    task = enqueue(client, receiver.url("/never"))  # due now
    response = cancel(client, task["id"])
    assert response.status_code == 200
    cancelled = response.get_json()
    assert cancelled["id"] == task["id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["resolvedAt"] is None
    assert cancelled["attempts"] == 0
    assert parse_time(cancelled["updatedAt"]) >= parse_time(task["updatedAt"])
    assert get_task(client, task["id"]) == cancelled
    dispatcher.tick()
    assert receiver.calls() == []  # a cancelled task is never called
    assert get_task(client, task["id"])["status"] == "cancelled"


def test_cancel_a_stale_task(client, tasks_by_status):
    stale = tasks_by_status["stale"]
    response = cancel(client, stale["id"])
    assert response.status_code == 200
    cancelled = response.get_json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["resolvedAt"] is None
    assert cancelled["attempts"] == stale["attempts"] == 1
    assert cancelled["lastStatusCode"] == 500  # the history stays


def test_cancelling_twice_returns_the_task_unchanged(client):
    task = enqueue(client, executeAt=FUTURE)
    first = cancel(client, task["id"])
    second = cancel(client, task["id"])
    assert first.status_code == second.status_code == 200
    assert second.get_json() == first.get_json()  # updatedAt included


@pytest.mark.parametrize("status", ["resolved", "running"])
def test_cancel_is_refused_for_resolved_and_running_tasks(client, tasks_by_status, status):
    task = tasks_by_status[status]
    error = assert_error(cancel(client, task["id"]), 409, "conflict")
    assert error["details"].get("status") == status
    assert get_task(client, task["id"]) == task  # nothing changed


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "abc"])
def test_cancel_an_unknown_task_is_404(client, task_id):
    assert_error(cancel(client, task_id), 404, "not_found")


def test_resolved_at_is_set_only_on_resolve(client, tasks_by_status):
    for status, task in tasks_by_status.items():
        assert (task["resolvedAt"] is not None) == (status == "resolved"), status
    resolved = tasks_by_status["resolved"]
    assert parse_time(resolved["resolvedAt"]) >= parse_time(resolved["createdAt"])


# -- retry ----------------------------------------------------------------------------


def test_retry_a_stale_task(client, dispatcher, receiver, fast_retries):
    receiver.behave("/flaky", statuses=[500, 200])
    task = enqueue(client, receiver.url("/flaky"), maxRetries=0, executeAt="2020-05-05T05:05:05Z")
    dispatcher.tick()
    stale = get_task(client, task["id"])
    assert stale["status"] == "stale"
    assert stale["attempts"] == 1
    dispatcher.tick()
    assert len(receiver.calls()) == 1  # a stale task is never called again by itself

    before = utc_now()
    response = retry(client, task["id"])
    assert response.status_code == 200
    retried = response.get_json()
    assert retried["status"] == "pending"
    assert retried["attempts"] == 1  # kept
    assert retried["executeAt"] == "2020-05-05T05:05:05Z"  # what the client asked for
    next_attempt = parse_time(retried["nextAttemptAt"])
    assert abs(next_attempt - before) < timedelta(seconds=30)  # due now
    assert next_attempt > parse_time(stale["nextAttemptAt"])
    assert get_task(client, task["id"]) == retried

    dispatcher.tick()
    second_call = receiver.calls("/flaky")[1]
    assert second_call.header("X-Scheduler-Attempt") == "2"
    assert second_call.json()["attempt"] == 2
    assert second_call.json()["executeAt"] == "2020-05-05T05:05:05Z"
    done = get_task(client, task["id"])
    assert done["status"] == "resolved"
    assert done["attempts"] == 2
    assert [a["statusCode"] for a in attempts_of(client, task["id"])] == [500, 200]


def test_retry_grants_a_fresh_budget(client, dispatcher, receiver, fast_retries):
    """maxRetries=1: two tries per budget; attempts keep counting across budgets."""
    receiver.behave("/down", statuses=[500])
    task = enqueue(client, receiver.url("/down"), maxRetries=1)
    statuses = []
    for _ in range(2):
        dispatcher.tick()
        statuses.append(get_task(client, task["id"])["status"])
    assert statuses == ["pending", "stale"]
    assert get_task(client, task["id"])["attempts"] == 2

    assert retry(client, task["id"]).status_code == 200
    statuses = []
    for _ in range(3):
        dispatcher.tick()
        statuses.append(get_task(client, task["id"])["status"])
    assert statuses == ["pending", "stale", "stale"]  # two more tries, then it waits again
    final = get_task(client, task["id"])
    assert final["attempts"] == 4
    assert final["lastStatusCode"] == 500
    assert [a["attempt"] for a in attempts_of(client, task["id"])] == [1, 2, 3, 4]
    assert [c.header("X-Scheduler-Attempt") for c in receiver.calls()] == ["1", "2", "3", "4"]


def test_retry_with_zero_retries_tries_once_more(client, dispatcher, receiver, store, fast_retries):
    set_config(store, max_retries=0)  # the config's value applies: maxRetries is null
    receiver.behave("/down", statuses=[500])
    task = enqueue(client, receiver.url("/down"))
    assert task["maxRetries"] is None
    dispatcher.tick()
    assert get_task(client, task["id"])["status"] == "stale"
    assert retry(client, task["id"]).status_code == 200
    dispatcher.tick()
    again = get_task(client, task["id"])
    assert again["status"] == "stale"
    assert again["attempts"] == 2
    assert len(receiver.calls()) == 2


def test_retry_a_cancelled_task_makes_it_due_now(client, dispatcher, receiver):
    task = enqueue(client, receiver.url("/later"), executeAt=FUTURE, payload="p")
    assert cancel(client, task["id"]).status_code == 200
    before = utc_now()
    response = retry(client, task["id"])
    assert response.status_code == 200
    retried = response.get_json()
    assert retried["status"] == "pending"
    assert retried["executeAt"] == "2099-01-01T00:00:00Z"
    assert abs(parse_time(retried["nextAttemptAt"]) - before) < timedelta(seconds=30)
    dispatcher.tick()
    [call] = receiver.calls("/later")
    assert call.json() == {
        "taskId": task["id"],
        "executeAt": "2099-01-01T00:00:00Z",
        "attempt": 1,
        "payload": "p",
    }
    assert get_task(client, task["id"])["status"] == "resolved"


@pytest.mark.parametrize("status", ["pending", "running", "resolved"])
def test_retry_is_refused_for_other_states(client, tasks_by_status, status):
    task = tasks_by_status[status]
    error = assert_error(retry(client, task["id"]), 409, "conflict")
    assert error["details"].get("status") == status
    assert get_task(client, task["id"]) == task


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "abc"])
def test_retry_an_unknown_task_is_404(client, task_id):
    assert_error(retry(client, task_id), 404, "not_found")


def test_cancel_then_retry_then_cancel(client):
    task = enqueue(client, executeAt=FUTURE)
    assert cancel(client, task["id"]).get_json()["status"] == "cancelled"
    assert retry(client, task["id"]).get_json()["status"] == "pending"
    assert cancel(client, task["id"]).get_json()["status"] == "cancelled"
    assert get_task(client, task["id"])["status"] == "cancelled"
