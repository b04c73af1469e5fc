"""The queues and schedules of `scheduler export` / `scheduler import`, and the schedules'
side of `scheduler rotate-key`, on each backend: read from one database, written into an
empty one, as they were; webhookAuth opened under the source's key and sealed under the
target's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.encryption import AuthCipher, generate_key, rotate_schedules
from scheduler_core.models import NewTask, TaskStatus
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store import Store, open_store
from scheduler_core.store.sqlite import to_micros
from scheduler_core.transfer import ExportedQueue, ExportedSchedule
from tests.store.databases import empty_database
from tests.support.database import TestDatabase

SOURCE_KEY, TARGET_KEY = generate_key(), generate_key()
FIRE = datetime(2030, 3, 31, 1, 0, 0, 123456, tzinfo=UTC)
MADE = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def source(backend: str, tmp_path: Path) -> Iterator[Store]:
    with empty_database(backend, tmp_path, "scheduler_src") as url:
        store = open_store(url, pool_size=2, encryption_keys=(SOURCE_KEY,))
        store.migrate()
        yield store
        store.close()


@pytest.fixture
def target(backend: str, tmp_path: Path) -> Iterator[Store]:
    with empty_database(backend, tmp_path, "scheduler_dst") as url:
        store = open_store(url, pool_size=2, encryption_keys=(TARGET_KEY,))
        store.migrate()
        yield store
        store.close()


def _url(store: Store) -> str:
    path = getattr(store, "path", None)
    return f"sqlite:///{path}" if path else str(store._dsn)  # type: ignore[attr-defined]


def _param(db: TestDatabase, value: Any) -> Any:
    if db.dialect == "sqlite" and isinstance(value, datetime):
        return to_micros(value)
    if db.dialect == "sqlite" and isinstance(value, bool):
        return int(value)
    return value


def add_queue(store: Store, name: str, paused: bool = False, **columns: int) -> None:
    db = TestDatabase(_url(store))
    values = {"queue": name, "paused": paused, **columns}
    db.execute(
        f"INSERT INTO scheduler_config ({', '.join(values)})"
        f" VALUES ({', '.join('%s' for _ in values)})",
        tuple(_param(db, v) for v in values.values()),
    )


def add_schedule(store: Store, name: str, **columns: Any) -> None:
    db = TestDatabase(_url(store))
    values: dict[str, Any] = {
        "name": name,
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "catch_up": "latest",
        "paused": False,
        "webhook_url": "http://127.0.0.1:9/nightly",
        "webhook_auth": None,
        "payload": '{"z": 1, "a": ["Ω"]}',
        "queue": "default",
        "max_retries": None,
        "next_fire_at": FIRE,
        "last_fire_at": None,
        "created_at": MADE,
        "updated_at": MADE,
        **columns,
    }
    db.execute(
        f"INSERT INTO scheduler_schedules ({', '.join(values)})"
        f" VALUES ({', '.join('%s' for _ in values)})",
        tuple(_param(db, v) for v in values.values()),
    )


def _schedules(store: Store) -> dict[str, tuple[Any, ...]]:
    """Every column but webhook_auth, raw, by name; payload as its text."""
    db = TestDatabase(_url(store))
    payload = "payload::text" if db.dialect == "postgresql" else "payload"
    rows = db.execute(
        f"SELECT name, cron, timezone, catch_up, paused, webhook_url, {payload}, queue,"
        " max_retries, next_fire_at, last_fire_at, created_at, updated_at"
        " FROM scheduler_schedules ORDER BY name"
    )
    return {row[0]: tuple(row) for row in rows}


def _auth(store: Store, name: str) -> str | None:
    [(stored,)] = TestDatabase(_url(store)).execute(
        "SELECT webhook_auth FROM scheduler_schedules WHERE name = %s", (name,)
    )
    return str(stored) if stored is not None else None


def test_queues_schedules_and_the_tasks_in_them_move_as_they_were(
    source: Store, target: Store
) -> None:
    add_queue(source, "mail", paused=True, max_dispatches_per_second=50, select_size=20)
    add_queue(source, "reports.v2", max_concurrent_dispatches=3)
    add_schedule(source, "nightly", queue="mail", max_retries=2, paused=False)
    add_schedule(source, "weekly", paused=True, next_fire_at=None, last_fire_at=MADE)
    sealed = AuthCipher([SOURCE_KEY]).seal("Bearer nightly-secret")
    TestDatabase(_url(source)).execute(
        "UPDATE scheduler_schedules SET webhook_auth = %s WHERE name = 'nightly'", (sealed,)
    )
    [(mail_task, _)] = source.enqueue(
        [NewTask(webhook_url="http://127.0.0.1:9/m", queue="mail", schedule="nightly")]
    )
    [(plain_task, _)] = source.enqueue([NewTask(webhook_url="http://127.0.0.1:9/d")])

    queues = source.export_queues()
    assert [(q.name, q.paused) for q in queues] == [
        ("default", False),
        ("mail", True),
        ("reports.v2", False),
    ]
    assert queues[1].config == RuntimeConfig(max_dispatches_per_second=50, select_size=20)
    schedules = source.export_schedules()
    assert [s.name for s in schedules] == ["nightly", "weekly"]
    assert schedules[0].webhook_auth == sealed  # as stored: the caller opens it
    assert schedules[0].payload_json == '{"z": 1, "a": ["Ω"]}'
    assert (schedules[0].next_fire_at, schedules[1].last_fire_at) == (FIRE, MADE)
    tasks = {t.id: t for t in source.export_tasks(frozenset(TaskStatus))}
    assert (tasks[mail_task.id].queue, tasks[mail_task.id].schedule) == ("mail", "nightly")
    assert (tasks[plain_task.id].queue, tasks[plain_task.id].schedule) == ("default", None)

    # The target: `default` is there already (left alone), the others are created.
    opened = [
        s if s.webhook_auth is None else _opened(s, "Bearer nightly-secret") for s in schedules
    ]
    assert target.import_queues(queues) == ["mail", "reports.v2"]
    assert target.import_schedules(opened) == ["nightly", "weekly"]
    assert target.import_tasks(list(tasks.values())).created == list(tasks)

    assert {q.name: (q.columns, q.paused) for q in target.export_queues()} == {
        q.name: (q.columns, q.paused) for q in queues
    }
    assert target.get_config("mail") == queues[1].config
    assert _schedules(target) == _schedules(source)
    stored = _auth(target, "nightly")
    assert stored is not None and stored != sealed
    assert AuthCipher([TARGET_KEY]).open(stored) == "Bearer nightly-secret"
    assert _auth(target, "weekly") is None
    moved = target.get(mail_task.id)
    assert moved is not None and (moved.queue, moved.schedule) == ("mail", "nightly")

    # Again: everything is there; nothing is created, nothing changed.
    add_queue(target, "extra")
    assert target.import_queues([*queues, ExportedQueue("extra", {"select_size": 1})]) == []
    assert target.import_schedules(opened) == []
    assert target.get_config("extra") == RuntimeConfig()


def _opened(schedule: ExportedSchedule, auth: str) -> ExportedSchedule:
    return replace(schedule, webhook_auth=auth)


def test_rotating_the_schedules_auth_pages_by_name_and_compares_before_it_sets(
    source: Store,
) -> None:
    old, new = generate_key(), generate_key()
    for n in range(5):
        add_schedule(source, f"s{n}")
    values = {
        "s0": "Bearer plain",  # stored before a key was set
        "s1": AuthCipher([old]).seal("Bearer old"),
        "s2": AuthCipher([new]).seal("Bearer new"),
        "s4": AuthCipher([generate_key()]).seal("Bearer lost"),  # no key opens it
    }
    db = TestDatabase(_url(source))
    for name, value in values.items():
        db.execute(
            "UPDATE scheduler_schedules SET webhook_auth = %s WHERE name = %s", (value, name)
        )

    assert source.schedule_auth_page("", 2) == [("s0", values["s0"]), ("s1", values["s1"])]
    assert source.schedule_auth_page("s1", 10) == [("s2", values["s2"]), ("s4", values["s4"])]
    # Compare and set: a value changed since it was read is left alone.
    assert source.replace_schedule_auth([("s0", "not what is stored", "x")]) == []
    assert _auth(source, "s0") == "Bearer plain"

    result = rotate_schedules(source, AuthCipher([new, old]), batch_size=2)

    assert (result.encrypted, result.reencrypted, result.current) == (1, 1, 1)
    assert result.unreadable == ["s4"]
    for name, clear in (("s0", "Bearer plain"), ("s1", "Bearer old"), ("s2", "Bearer new")):
        stored = _auth(source, name)
        assert stored is not None and AuthCipher([new]).open(stored) == clear
    assert _auth(source, "s2") == values["s2"]  # already current: not rewritten
    assert _auth(source, "s3") is None and _auth(source, "s4") == values["s4"]


def test_a_task_whose_webhook_auth_is_sealed_keeps_its_queue_and_schedule(source: Store) -> None:
    add_queue(source, "mail")
    [(task, _)] = source.enqueue(
        [
            NewTask(
                webhook_url="http://127.0.0.1:9/m",
                webhook_auth="Bearer x",
                queue="mail",
                schedule="nightly",
            )
        ]
    )
    stored = source.get(task.id)
    assert stored is not None and (stored.queue, stored.schedule) == ("mail", "nightly")
