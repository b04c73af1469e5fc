"""POST /api/v1/tasks with a JSON array: 1..1000 tasks, in one transaction, all or nothing."""

import logging

import pytest

from tests.api.helpers import (
    FUTURE,
    NOWHERE,
    TASK_FIELDS,
    assert_error,
    enqueue,
    get_task,
    task_count,
    task_ids,
)


def items(count, **fields):
    return [
        {"webhookUrl": NOWHERE, "executeAt": FUTURE, "payload": {"i": i}, **fields}
        for i in range(count)
    ]


def test_one_item_array(client, store):
    response = client.post("/api/v1/tasks", json=items(1))
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"tasks"}
    [task] = body["tasks"]
    assert set(task) == TASK_FIELDS
    assert task["payload"] == {"i": 0}
    assert get_task(client, task["id"]) == task
    assert task_count(store) == 1


def test_a_thousand_items_are_enqueued_in_order(client, store):
    response = client.post("/api/v1/tasks", json=items(1000))
    assert response.status_code == 201
    tasks = response.get_json()["tasks"]
    assert [t["payload"]["i"] for t in tasks] == list(range(1000))
    assert len({t["id"] for t in tasks}) == 1000
    assert all(t["status"] == "pending" for t in tasks)
    assert task_ids(store) == {t["id"] for t in tasks}
    # Creation order follows the array: the list (newest first) shows it reversed.
    listed = client.get("/api/v1/tasks?limit=1000").get_json()["tasks"]
    assert [t["payload"]["i"] for t in listed] == list(range(999, -1, -1))


def test_items_keep_their_own_fields(client):
    body = [
        {"webhookUrl": "https://a.example.com/1", "payload": "first", "maxRetries": 0},
        {
            "webhookUrl": "http://b.example.com/2",
            "executeAt": "2030-01-01T01:00:00+01:00",
            "idempotencyKey": "second",
        },
        {"webhookUrl": "http://c.example.com/3", "webhookAuth": "Bearer batch-secret"},
    ]
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201
    first, second, third = response.get_json()["tasks"]
    assert (first["webhookUrl"], first["payload"], first["maxRetries"]) == (
        "https://a.example.com/1",
        "first",
        0,
    )
    assert (second["executeAt"], second["idempotencyKey"]) == ("2030-01-01T00:00:00Z", "second")
    assert third["payload"] is None and third["maxRetries"] is None
    assert "batch-secret" not in response.get_data(as_text=True)
    assert "webhookAuth" not in response.get_data(as_text=True)


@pytest.mark.parametrize("count", [0, 1001])
def test_an_array_outside_1_to_1000_is_refused(client, store, count):
    response = client.post("/api/v1/tasks", json=items(count))
    assert_error(response, 400, "validation_error")
    assert task_count(store) == 0


def test_one_bad_item_refuses_all_and_is_named_by_index(client, store):
    body = items(5)
    body[3]["webhookUrl"] = "ftp://example.com/x"
    response = client.post("/api/v1/tasks", json=body)
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"3"}
    assert set(error["details"]["3"]) == {"webhookUrl"}
    assert task_count(store) == 0


def test_every_bad_item_is_named(client, store):
    body = items(1000)
    body[0]["maxRetries"] = -1
    body[500]["webhookURL"] = body[500].pop("webhookUrl")
    body[999]["executeAt"] = "2030-01-01T00:00:00"
    response = client.post("/api/v1/tasks", json=body)
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"0", "500", "999"}
    assert set(error["details"]["0"]) == {"maxRetries"}
    assert set(error["details"]["500"]) == {"webhookURL", "webhookUrl"}
    assert set(error["details"]["999"]) == {"executeAt"}
    assert task_count(store) == 0


@pytest.mark.parametrize("bad", [None, 1, "http://example.com/hook", [], [{"webhookUrl": NOWHERE}]])
def test_an_item_that_is_not_an_object_is_named(client, store, bad):
    body = [{"webhookUrl": NOWHERE}, bad]
    response = client.post("/api/v1/tasks", json=body)
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"1"}
    assert task_count(store) == 0


def test_a_refused_array_does_not_use_up_its_idempotency_keys(client, store):
    body = [
        {"webhookUrl": NOWHERE, "idempotencyKey": "k1"},
        {"webhookUrl": NOWHERE, "maxRetries": "many"},
    ]
    assert_error(client.post("/api/v1/tasks", json=body), 400, "validation_error")
    assert task_count(store) == 0
    assert enqueue(client, idempotencyKey="k1")["idempotencyKey"] == "k1"  # 201: created now


def test_array_items_repeating_an_existing_key_return_the_existing_task(client, store):
    existing = enqueue(client, idempotencyKey="known", payload="original")
    body = [
        {"webhookUrl": NOWHERE, "payload": "new-1"},
        {"webhookUrl": NOWHERE, "payload": "ignored", "idempotencyKey": "known"},
        {"webhookUrl": NOWHERE, "payload": "new-2", "idempotencyKey": "fresh"},
    ]
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201
    first, repeat, fresh = response.get_json()["tasks"]
    assert repeat == existing
    assert first["payload"] == "new-1"
    assert fresh["payload"] == "new-2" and fresh["idempotencyKey"] == "fresh"
    assert task_count(store) == 3


def test_a_key_repeated_inside_one_array_creates_one_task(client, store):
    body = [
        {"webhookUrl": NOWHERE, "payload": 1, "idempotencyKey": "twice"},
        {"webhookUrl": NOWHERE, "payload": 2, "idempotencyKey": "twice"},
    ]
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201
    first, second = response.get_json()["tasks"]
    assert first["id"] == second["id"]
    assert second["payload"] == 1
    assert task_count(store) == 1
    again = enqueue(client, expect=200, idempotencyKey="twice")
    assert again["id"] == first["id"]


def test_batch_tasks_are_delivered(client, dispatcher, receiver):
    body = [{"webhookUrl": receiver.url(f"/b{i}"), "payload": i} for i in range(3)]
    tasks = client.post("/api/v1/tasks", json=body).get_json()["tasks"]
    dispatcher.tick()
    receiver.wait_for(3)
    for i, task in enumerate(tasks):
        [call] = receiver.calls(f"/b{i}")
        assert call.json()["taskId"] == task["id"] and call.json()["payload"] == i
        assert get_task(client, task["id"])["status"] == "resolved"


def test_an_array_is_one_log_line_naming_its_count(client, caplog):
    caplog.set_level(logging.INFO, logger="scheduler_core.api.tasks")
    first = client.post("/api/v1/tasks", json=items(3, idempotencyKey=None))
    assert first.status_code == 201
    again = client.post(
        "/api/v1/tasks", json=[*items(2), {"webhookUrl": NOWHERE, "idempotencyKey": "k"}]
    )
    repeat = client.post("/api/v1/tasks", json=[{"webhookUrl": NOWHERE, "idempotencyKey": "k"}] * 2)
    assert again.status_code == 201 and repeat.status_code == 201
    lines = [r.getMessage() for r in caplog.records if r.name == "scheduler_core.api.tasks"]
    assert len(lines) == 3, lines
    ids = [t["id"] for t in first.get_json()["tasks"]]
    assert lines[0].startswith("enqueued an array of 3: 3 created")
    assert f"first task={ids[0]}" in lines[0] and f"last task={ids[2]}" in lines[0]
    assert lines[1].startswith("enqueued an array of 3: 3 created")
    assert lines[2].startswith("enqueued an array of 2: 0 created")
    assert lines[2].endswith("2 idempotent repeats")
