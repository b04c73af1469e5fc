"""Helpers of the schedule tests: a schedule placed at a simulated fire time, and the
tasks schedules enqueued, read straight from the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler_core.schedules import NewSchedule
from scheduler_core.store import Store
from scheduler_core.store.sqlite import to_micros
from tests.cli.conftest import processes  # noqa: F401 - a fixture, shared
from tests.client.conftest import base_url  # noqa: F401 - a fixture, shared
from tests.support.database import TestDatabase
from tests.ui.conftest import dashboard, keyed_app, keyed_settings  # noqa: F401 - fixtures

HOOK = "http://127.0.0.1:9/hook"


def new_schedule(name: str = "job", cron: str = "* * * * *", **fields: Any) -> NewSchedule:
    return NewSchedule(name=name, cron=cron, webhook_url=fields.pop("webhook_url", HOOK), **fields)


def place(db: TestDatabase, name: str, next_fire: datetime) -> None:
    """Make `next_fire` the schedule's next fire time, as if it had been waiting for it."""
    value: Any = next_fire if db.dialect == "postgresql" else to_micros(next_fire)
    db.execute("UPDATE scheduler_schedules SET next_fire_at = %s WHERE name = %s", (value, name))


def fired_tasks(db: TestDatabase) -> list[dict[str, Any]]:
    """Every task a schedule made, by due time: schedule, execute_at, idempotency key."""
    rows = db.execute(
        "SELECT schedule, execute_at, idempotency_key, webhook_auth, queue FROM scheduler_tasks"
        " WHERE schedule IS NOT NULL ORDER BY execute_at, idempotency_key"
    )
    return [
        {
            "schedule": r[0],
            "execute_at": db.time(r[1]),
            "key": r[2],
            "webhook_auth": r[3],
            "queue": r[4],
        }
        for r in rows
    ]


def step_through(store: Store, times: list[datetime]) -> list[datetime]:
    """fire_due_schedules at each simulated time; the execute_at of every task made."""
    made = []
    for moment in times:
        made.extend(task.execute_at for task in store.fire_due_schedules(now=moment))
    return made
