"""PATCH /api/v1/tasks/{id}: reschedule a pending task."""

import threading
import uuid
from datetime import timedelta

import pytest

from tests.api.held import held_claim
from tests.api.helpers import FUTURE, NOWHERE, assert_error, enqueue, get_task, parse_time


def patch(client, task_id, body):
    return client.patch(f"/api/v1/tasks/{task_id}", json=body)


def test_a_pending_task_is_due_at_the_new_time(client):
    task = enqueue(client, executeAt=FUTURE, payload={"keep": 1}, maxRetries=3)
    response = patch(client, task["id"], {"executeAt": "2031-06-01T12:00:00+02:00"})
    assert response.status_code == 200, response.get_data(as_text=True)
    moved = response.get_json()
    assert moved["executeAt"] == moved["nextAttemptAt"] == "2031-06-01T10:00:00Z"
    assert moved["status"] == "pending"
    assert parse_time(moved["updatedAt"]) >= parse_time(task["updatedAt"])
    unchanged = {k: v for k, v in task.items() if k not in ("executeAt", "nextAttemptAt")}
    assert {k: v for k, v in moved.items() if k in unchanged and k != "updatedAt"} == {
        k: v for k, v in unchanged.items() if k != "updatedAt"
    }
    assert get_task(client, task["id"]) == moved


@pytest.mark.parametrize("offset", ["-18:38", "+23:59", "+15:59"])
def test_any_utc_offset_rfc_3339_allows(client, offset):
    """PostgreSQL takes offsets up to ±15:59 only; the API takes what RFC 3339 does."""
    task = enqueue(client, executeAt=FUTURE)
    moved = patch(client, task["id"], {"executeAt": f"2030-01-01T00:00:00{offset}"})
    assert moved.status_code == 200, moved.get_data(as_text=True)
    sign = -1 if offset[0] == "+" else 1
    hours, minutes = map(int, offset[1:].split(":"))
    expected = parse_time("2030-01-01T00:00:00Z") + sign * timedelta(hours=hours, minutes=minutes)
    assert parse_time(moved.get_json()["executeAt"]) == expected
    created = enqueue(client, executeAt=f"2030-01-01T00:00:00{offset}")
    assert parse_time(created["executeAt"]) == expected


def test_a_past_time_is_due_at_once(client, dispatcher, receiver):
    task = enqueue(client, receiver.url("/moved"), executeAt=FUTURE)
    dispatcher.tick()
    assert receiver.calls() == []
    moved = patch(client, task["id"], {"executeAt": "2001-02-03T04:05:06Z"}).get_json()
    assert moved["executeAt"] == moved["nextAttemptAt"] == "2001-02-03T04:05:06Z"
    dispatcher.tick()
    [call] = receiver.calls("/moved")
    assert call.json()["executeAt"] == "2001-02-03T04:05:06Z"  # the callback says so too
    assert get_task(client, task["id"])["status"] == "resolved"


def test_a_task_that_failed_keeps_its_attempts_and_budget(
    client, dispatcher, receiver, fast_retries
):
    receiver.behave("/flaky", statuses=[500, 200])
    task = enqueue(client, receiver.url("/flaky"), maxRetries=1)
    dispatcher.tick()
    failed = get_task(client, task["id"])
    assert (failed["status"], failed["attempts"]) == ("pending", 1)
    moved = patch(client, task["id"], {"executeAt": FUTURE}).get_json()
    assert (moved["attempts"], moved["lastStatusCode"]) == (1, 500)
    dispatcher.tick()
    assert len(receiver.calls()) == 1  # not due any more
    patch(client, task["id"], {"executeAt": "2020-01-01T00:00:00Z"})
    dispatcher.tick()
    assert get_task(client, task["id"])["status"] == "resolved"


@pytest.mark.parametrize("status", ["running", "resolved", "stale", "cancelled"])
def test_other_states_are_409_and_nothing_changes(client, tasks_by_status, status):
    task = tasks_by_status[status]
    error = assert_error(patch(client, task["id"], {"executeAt": FUTURE}), 409, "conflict")
    assert error["details"] == {"status": status}
    assert status in error["message"]
    assert get_task(client, task["id"]) == task


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "abc", "' OR 1=1 --"])
@pytest.mark.parametrize("body", [{"executeAt": FUTURE}, {}, {"webhookUrl": NOWHERE}, "x"])
def test_an_unknown_task_is_404_whatever_the_body(client, task_id, body):
    assert_error(patch(client, task_id, body), 404, "not_found")
    assert_error(client.patch(f"/api/v1/tasks/{task_id}", data=b"{nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_schema"),
        ({"executeAt": None}, "executeAt"),
        ({"executeAt": "2030-01-01T00:00:00"}, "executeAt"),  # no offset
        ({"executeAt": "2030-01-01"}, "executeAt"),
        ({"executeAt": "tomorrow"}, "executeAt"),
        ({"executeAt": 1893456000}, "executeAt"),
        ({"executeAt": "9999-01-01T00:00:00Z"}, "executeAt"),
        ({"executeAt": FUTURE, "when": 1}, "when"),
        ({"executeAt": FUTURE, "webhookUrl": "http://127.0.0.1:9/other"}, "webhookUrl"),
        ({"payload": 1}, "payload"),
        ({"status": "cancelled"}, "status"),
        ({"webhookAuth": "Bearer x"}, "webhookAuth"),
        ([{"executeAt": FUTURE}], "_schema"),
        ("2030-01-01T00:00:00Z", "_schema"),
    ],
)
def test_bad_bodies_are_400_and_change_nothing(client, body, field):
    task = enqueue(client, executeAt=FUTURE)
    error = assert_error(patch(client, task["id"], body), 400, "validation_error")
    assert field in error["details"]
    assert get_task(client, task["id"]) == task


def test_fields_a_task_has_say_they_cannot_be_changed(client):
    task = enqueue(client, executeAt=FUTURE)
    body = {"executeAt": FUTURE, "webhookUrl": NOWHERE, "webhookAuth": "Bearer secret-9"}
    error = assert_error(patch(client, task["id"], body), 400, "validation_error")
    for name in ("webhookUrl", "webhookAuth"):
        assert "cannot be changed" in error["details"][name][0].lower()
    assert "secret-9" not in str(error)


def test_a_body_that_is_not_json_is_400(client):
    task = enqueue(client, executeAt=FUTURE)
    response = client.patch(f"/api/v1/tasks/{task['id']}", data=b"{nope")
    assert_error(response, 400, "invalid_json")
    assert_error(client.patch(f"/api/v1/tasks/{task['id']}", data=b""), 400, "invalid_json")


def test_a_claim_that_wins_the_race_gives_409_and_no_half_update(client, db):
    """The claim commits while the PATCH waits for the row: the PATCH then finds the task
    running and changes nothing (no new executeAt on a task being delivered)."""
    task = enqueue(client, executeAt=FUTURE)
    results = []
    with held_claim(db, [task["id"]]) as claim:
        worker = threading.Thread(
            target=lambda: results.append(
                patch(client, task["id"], {"executeAt": "2040-01-01T00:00:00Z"})
            )
        )
        worker.start()
        claim.wait_for_a_waiter()
        assert worker.is_alive()  # it waits for the claim to end
    worker.join(30)
    [response] = results
    error = assert_error(response, 409, "conflict")
    assert error["details"] == {"status": "running"}
    after = get_task(client, task["id"])
    assert after["status"] == "running"
    assert (after["executeAt"], after["nextAttemptAt"]) == (FUTURE, FUTURE)


def test_concurrent_reschedules_each_land_whole(client):
    task = enqueue(client, executeAt=FUTURE)
    times = [f"2035-01-01T00:00:{n:02d}Z" for n in range(8)]
    responses = []

    def move(moment):
        responses.append(patch(client, task["id"], {"executeAt": moment}))

    workers = [threading.Thread(target=move, args=(t,)) for t in times]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert sorted(r.status_code for r in responses) == [200] * len(times)
    final = get_task(client, task["id"])
    assert final["executeAt"] == final["nextAttemptAt"]
    assert final["executeAt"] in times
    assert parse_time(final["updatedAt"]) - parse_time(task["updatedAt"]) < timedelta(minutes=5)
