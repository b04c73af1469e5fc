"""A reschedule and a bulk retry wake running dispatchers as an enqueue does: a task
moved to "now" is called at once, one moved a little later is called when due and not
before, one moved away is not called at its old time, and bulk-retried tasks are called
at once.

The dispatchers here poll once an hour and re-read the earliest due time only every
minute (STATE_REFRESH_S patched), so only the reschedule's notice can make them look in
time. The dispatcher either shares the API's store (the notice in-process) or has a store
of its own, as another process would (PostgreSQL: NOTIFY; SQLite: the file's
data_version).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from scheduler_core.dispatcher import Dispatcher, loop
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.store import Store, open_store
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task, ts
from tests.support.database import TestDatabase
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

HOUR_MS = 3_600_000
FAR = "2099-01-01T00:00:00Z"


@pytest.fixture(params=["same store", "other store"])
def running_dispatcher(
    request: pytest.FixtureRequest,
    store: Store,
    plugins: PluginManager,
    settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Dispatcher]:
    monkeypatch.setattr(loop, "STATE_REFRESH_S", 60.0)
    set_config(store, base_interval_ms=HOUR_MS)
    own = request.param == "other store"
    dispatcher_store = open_store(settings.database_url, pool_size=2) if own else store
    dispatcher = Dispatcher(dispatcher_store, plugins)
    dispatcher.start()
    yield dispatcher
    dispatcher.stop(wait=True)
    if own:
        dispatcher_store.close()


def _reschedule(client, task_id: str, execute_at: str) -> dict:
    response = client.patch(f"/api/v1/tasks/{task_id}", json={"executeAt": execute_at})
    assert response.status_code == 200, response.json
    return response.json


def _settled(dispatcher: Dispatcher, receiver: Receiver, client) -> None:
    """The dispatcher has started and gone to sleep: a task due now is called, then it
    sleeps with nothing due for an hour."""
    probe = enqueue(client, receiver.url("/probe"))
    receiver.wait_for(1, "/probe", timeout=15)
    wait_until(lambda: task(client, probe["id"])["status"] == "resolved", timeout=15)


def test_rescheduled_to_now_is_called_at_once(
    client, running_dispatcher: Dispatcher, receiver: Receiver, db: TestDatabase
) -> None:
    created = enqueue(client, receiver.url("/moved"), executeAt=FAR)
    _settled(running_dispatcher, receiver, client)
    moved_at = time.monotonic()
    _reschedule(client, created["id"], db.now().isoformat())
    [call] = receiver.wait_for(1, "/moved", timeout=15)
    assert call.header("X-Scheduler-Task-Id") == created["id"]
    assert call.at - moved_at < 5.0, "called only when the dispatcher looked by itself"


def test_rescheduled_a_little_later_is_called_when_due_not_before(
    client, running_dispatcher: Dispatcher, receiver: Receiver, db: TestDatabase
) -> None:
    created = enqueue(client, receiver.url("/soon"), executeAt=FAR)
    _settled(running_dispatcher, receiver, client)
    due = db.now() + timedelta(seconds=2)  # within the wake-up window of a notice
    moved = _reschedule(client, created["id"], due.isoformat())
    assert ts(moved["nextAttemptAt"]) == due
    receiver.wait_for(1, "/soon", timeout=15)
    # The outcome (and the lateness with it) is stored a moment after the receiver answers.
    [attempt] = wait_until(
        lambda: [a for a in attempts(client, created["id"]) if a["finishedAt"]], timeout=15
    )
    assert ts(attempt["startedAt"]) >= due  # by the database clock: not early
    assert ts(attempt["startedAt"]) - due < timedelta(seconds=5)  # nor an hour late
    assert 0 <= attempt["latenessMs"] < 5000


def test_rescheduled_away_is_not_called_at_its_old_time(
    client, running_dispatcher: Dispatcher, receiver: Receiver, db: TestDatabase
) -> None:
    due = db.now() + timedelta(seconds=2)
    created = enqueue(client, receiver.url("/away"), executeAt=due.isoformat())
    _settled(running_dispatcher, receiver, client)
    _reschedule(client, created["id"], FAR)
    wait_until(lambda: db.now() >= due + timedelta(seconds=1), timeout=15)
    sentinel = enqueue(client, receiver.url("/after"))  # a dispatcher still awake calls it
    receiver.wait_for(1, "/after", timeout=15)
    wait_until(lambda: task(client, sentinel["id"])["status"] == "resolved", timeout=15)
    assert receiver.calls("/away") == []
    assert task(client, created["id"])["status"] == "pending"


def test_bulk_retried_tasks_are_called_at_once(
    client, running_dispatcher: Dispatcher, receiver: Receiver
) -> None:
    created = [enqueue(client, receiver.url(f"/back{n}"), executeAt=FAR) for n in range(3)]
    for item in created:
        assert client.delete(f"/api/v1/tasks/{item['id']}").status_code == 200
    _settled(running_dispatcher, receiver, client)
    retried_at = time.monotonic()
    response = client.post("/api/v1/tasks:retry", json={"status": ["cancelled"]})
    assert response.json == {"count": 3}
    for n in range(3):
        [call] = receiver.wait_for(1, f"/back{n}", timeout=15)
        assert call.at - retried_at < 5.0, "called only when the dispatcher looked by itself"
