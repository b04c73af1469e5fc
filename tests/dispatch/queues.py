"""Queues for dispatcher tests, made with plain SQL on the config table (the queue API
has its own tests): a row per queue, its config set through the store."""

from __future__ import annotations

from scheduler_core.models import NewTask
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.base import Store
from tests.support.database import TestDatabase


def add_queue(db: TestDatabase, store: Store, name: str, **columns: int) -> RuntimeConfig:
    """Create queue `name` with the defaults, then `columns`; its token bucket starts full
    (counted from long ago)."""
    db.execute(f"INSERT INTO scheduler_config (queue) VALUES ('{name}')")
    db.execute(f"UPDATE scheduler_config SET bucket_at = {_long_ago(db)} WHERE queue = '{name}'")
    return store.update_config(columns, queue=name) if columns else store.get_config(name)


def set_paused(db: TestDatabase, name: str, paused: bool) -> None:
    value = "(1 = 1)" if paused else "(1 = 0)"  # a boolean in PostgreSQL, 0/1 in SQLite
    db.execute(f"UPDATE scheduler_config SET paused = {value} WHERE queue = '{name}'")


def enqueue_in(store: Store, queue: str, url: str, count: int) -> list[str]:
    """`count` tasks due now in `queue`; their ids in enqueue order."""
    made = store.enqueue([NewTask(webhook_url=url, queue=queue) for _ in range(count)])
    return [task.id for task, _ in made]


def _long_ago(db: TestDatabase) -> str:
    return "0" if db.dialect == "sqlite" else "'2000-01-01T00:00:00Z'"
