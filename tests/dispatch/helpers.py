"""Small helpers for dispatcher tests: enqueue and read tasks through the public API."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient

from scheduler_core.dispatcher import Dispatcher


def enqueue(client: FlaskClient, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"webhookUrl": url, **fields})
    assert response.status_code == 201, response.json
    task: dict[str, Any] = response.json
    return task


def enqueue_many(client: FlaskClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post("/api/v1/tasks", json=items)
    assert response.status_code == 201, response.json
    tasks: list[dict[str, Any]] = response.json["tasks"]
    return tasks


def task(client: FlaskClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def attempts(client: FlaskClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.json
    rows: list[dict[str, Any]] = response.json["attempts"]
    return rows


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def ms_between(earlier: str, later: str) -> float:
    return (ts(later) - ts(earlier)).total_seconds() * 1000


def timed_tick(dispatcher: Dispatcher) -> float:
    """Run one tick; return its wall time in seconds."""
    started = time.monotonic()
    dispatcher.tick()
    return time.monotonic() - started
