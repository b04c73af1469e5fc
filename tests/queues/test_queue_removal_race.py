"""A task whose queue was removed is never put back in it: retry, single or bulk, refuses."""

from __future__ import annotations

from tests.api.helpers import NOWHERE
from tests.queues.conftest import put_queue


def test_a_task_of_a_removed_queue_is_not_retried_into_it(client, store) -> None:
    put_queue(client, "gone")
    created = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "queue": "gone"})
    task_id = created.get_json()["id"]
    assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 200  # cancelled
    assert client.delete("/api/v1/queues/gone").status_code == 200

    one = client.post(f"/api/v1/tasks/{task_id}/retry")
    assert one.status_code == 409
    error = one.get_json()["error"]
    assert error["message"] == "The task's queue 'gone' no longer exists; it stays cancelled."
    assert error["details"] == {"status": "cancelled", "queue": "gone"}
    bulk = client.post("/api/v1/tasks:retry", json={"status": ["cancelled"]})
    assert bulk.get_json() == {"count": 0}
    assert store.get(task_id).status.value == "cancelled"
