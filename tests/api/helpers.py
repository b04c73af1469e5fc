"""Helpers shared by the REST API tests."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler_core.models import TaskFilter

TASK_FIELDS = {
    "id",
    "webhookUrl",
    "executeAt",
    "status",
    "attempts",
    "maxRetries",
    "nextAttemptAt",
    "payload",
    "idempotencyKey",
    "queue",
    "schedule",
    "notAfter",
    "successCodes",
    "staleCodes",
    "lastError",
    "lastStatusCode",
    "createdAt",
    "updatedAt",
    "resolvedAt",
}
STATUSES = ("pending", "running", "resolved", "stale", "cancelled")
FUTURE = "2099-01-01T00:00:00Z"
# Nothing listens on port 9 (discard) of loopback: good for tasks never delivered.
NOWHERE = "http://127.0.0.1:9/hook"


def all_tasks(store):
    """Every stored task, walking the store's pages (newest first)."""
    tasks, before = [], None
    while True:
        page, before = store.list_tasks(TaskFilter(), 1000, before)
        tasks.extend(page)
        if before is None:
            return tasks


def task_ids(store):
    return {task.id for task in all_tasks(store)}


def task_count(store):
    return len(all_tasks(store))


def assert_error(response, status, code):
    """The response is the documented error shape with this status and code."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def parse_time(value):
    """A timestamp the API returned: UTC with a Z."""
    assert isinstance(value, str) and value.endswith("Z"), value
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset().total_seconds() == 0
    return moment


def utc_now():
    return datetime.now(UTC)


def enqueue(client, url=NOWHERE, expect=201, **fields):
    response = client.post("/api/v1/tasks", json={"webhookUrl": url, **fields})
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def get_task(client, task_id):
    response = client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()
