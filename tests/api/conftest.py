"""Fixtures shared by the REST API tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler_core.store import Store, open_store
from tests.api.helpers import FUTURE, STATUSES, enqueue, get_task
from tests.conftest import set_config
from tests.support.database import sqlite_url


@dataclass
class UnreachableDatabase:
    url: str
    store: Store
    internals: str  # where the database is: never shown to a client


@pytest.fixture
def unreachable_database(backend: str, tmp_path: Path) -> Iterator[UnreachableDatabase]:
    """A store of the backend under test whose database cannot be reached.

    PostgreSQL: nothing listens on the port. SQLite: the folder holding the database file
    disappeared (an unmounted volume) after the store was opened.
    """
    if backend == "postgresql":
        url, internals = "postgresql://postgres@127.0.0.1:1/nowhere", "127.0.0.1:1"
        store = open_store(url, pool_size=1)
    else:
        folder = tmp_path / "unmounted"
        folder.mkdir()
        url, internals = sqlite_url(folder), str(folder)
        store = open_store(url, pool_size=1)
        folder.rmdir()
    yield UnreachableDatabase(url, store, internals)
    store.close()


@pytest.fixture
def fast_retries(store):
    """Failed attempts are due again at once, so one tick after another retries."""
    return set_config(store, retry_backoff_ms=0)


@pytest.fixture
def tasks_by_status(client, store, dispatcher, receiver, fast_retries):
    """One task in each status, keyed by status: {"pending": task_json, ...}."""
    receiver.behave("/ok", statuses=[200])
    receiver.behave("/fail", statuses=[500])
    resolved = enqueue(client, receiver.url("/ok"))
    stale = enqueue(client, receiver.url("/fail"), maxRetries=0)
    dispatcher.tick()
    running = enqueue(client, receiver.url("/ok"))
    [claimed] = store.claim_due(10, 60_000)
    assert claimed.id == running["id"]
    pending = enqueue(client, executeAt=FUTURE)
    cancelled = enqueue(client, executeAt=FUTURE)
    assert client.delete(f"/api/v1/tasks/{cancelled['id']}").status_code == 200
    tasks = {
        name: get_task(client, task["id"])
        for name, task in [
            ("pending", pending),
            ("running", running),
            ("resolved", resolved),
            ("stale", stale),
            ("cancelled", cancelled),
        ]
    }
    assert {name: task["status"] for name, task in tasks.items()} == {s: s for s in STATUSES}
    return tasks
