"""`scheduler export` / `scheduler import` with named queues and schedules, a file of the
previous format (1, before queues), and `scheduler rotate-key` over schedules: the real
command on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.encryption import AuthCipher, generate_key
from scheduler_core.models import NewTask
from scheduler_core.store import open_store
from scheduler_core.store.sqlite import to_micros
from tests.store.databases import query, require_backend
from tests.store.test_transfer_queues import FIRE, MADE
from tests.support.database import TestDatabase, postgres_database, sqlite_url
from tests.support.processes import run_cli

SECRET = "Bearer nightly-secret"


@pytest.fixture
def postgres_target() -> Iterator[str]:
    require_backend("postgresql")
    with postgres_database("scheduler_import") as url:
        store = open_store(url, pool_size=1)
        store.migrate()
        store.close()
        yield url


def _env(url: str, key: str | None) -> dict[str, str]:
    return {"SCHEDULER_DATABASE_URL": url, "SCHEDULER_ENCRYPTION_KEY": key or ""}


def _sql_value(url: str, value: Any) -> Any:
    if url.startswith("sqlite") and not isinstance(value, bool) and hasattr(value, "tzinfo"):
        return to_micros(value)
    if url.startswith("sqlite") and isinstance(value, bool):
        return int(value)
    return value


def _insert(url: str, table: str, **values: Any) -> None:
    TestDatabase(url).execute(
        f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('%s' for _ in values)})",
        tuple(_sql_value(url, v) for v in values.values()),
    )


def _schedule(url: str, name: str, **values: Any) -> None:
    _insert(
        url,
        "scheduler_schedules",
        **{
            "name": name,
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "webhook_url": "http://127.0.0.1:9/s",
            "next_fire_at": FIRE,
            "created_at": MADE,
            "updated_at": MADE,
            **values,
        },
    )


def _source(folder: Path, key: str) -> tuple[str, dict[str, str]]:
    """A SQLite database with queues `mail` (paused, rate-limited) and `reports`,
    schedules `nightly` (into mail, its webhookAuth sealed) and `weekly`, a task in each
    queue and a resolved one of a queue deleted since (`gone`)."""
    url = sqlite_url(folder, "source.db")
    store = open_store(url, pool_size=1, encryption_keys=(key,))
    store.migrate()
    try:
        _insert(url, "scheduler_config", queue="mail", paused=True, max_dispatches_per_second=50)
        _insert(url, "scheduler_config", queue="reports", select_size=40)
        _insert(url, "scheduler_config", queue="gone")  # removed below, once its task is done
        _schedule(url, "nightly", queue="mail", webhook_auth=AuthCipher([key]).seal(SECRET))
        _schedule(url, "weekly", cron="0 4 * * 1")
        created = store.enqueue(
            [
                NewTask(
                    webhook_url="http://127.0.0.1:9/m",
                    queue="mail",
                    schedule="nightly",
                    webhook_auth=SECRET,
                ),
                NewTask(webhook_url="http://127.0.0.1:9/r", queue="reports"),
                NewTask(webhook_url="http://127.0.0.1:9/g", queue="gone"),
            ]
        )
    finally:
        store.close()
    ids = dict(zip(("mail", "reports", "gone"), (t.id for t, _ in created), strict=True))
    TestDatabase(url).execute(
        "UPDATE scheduler_tasks SET status = 'resolved', resolved_at = updated_at WHERE id = %s",
        (ids["gone"],),
    )
    TestDatabase(url).execute("DELETE FROM scheduler_config WHERE queue = 'gone'")
    return url, ids


def _queues(url: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        url,
        "SELECT queue, paused, select_size, max_dispatches_per_second FROM scheduler_config",
    )
    return {r[0]: (bool(r[1]), r[2], r[3]) for r in rows}


def _tasks(url: str) -> dict[str, tuple[Any, ...]]:
    rows = query(url, "SELECT CAST(id AS TEXT), queue, schedule, status FROM scheduler_tasks")
    return {r[0]: tuple(r[1:]) for r in rows}


def test_queues_and_schedules_move_to_postgresql_and_those_there_already_stay(
    tmp_path: Path, postgres_target: str
) -> None:
    require_backend("sqlite", server=False)
    key, new_key = generate_key(), generate_key()
    source, ids = _source(tmp_path, key)
    # Already on the target: `reports` with a config of its own, `weekly` another cron.
    _insert(postgres_target, "scheduler_config", queue="reports", select_size=3)
    _schedule(postgres_target, "weekly", cron="30 5 * * *")
    export_file = tmp_path / "moved.jsonl"

    done = run_cli(
        None, "export", "-o", str(export_file), "--include-finished", env=_env(source, key)
    )
    assert done.returncode == 0, done.stderr
    assert "exported 3 tasks" in done.stderr and "3 queues" in done.stderr
    assert "2 schedules" in done.stderr and SECRET not in done.stderr
    header = json.loads(export_file.read_text().splitlines()[0])
    assert header["version"] == 2
    assert [(q["name"], q["paused"]) for q in header["queues"]] == [
        ("default", False),
        ("mail", True),
        ("reports", False),
    ]
    assert header["queues"][1]["config"]["maxDispatchesPerSecond"] == 50
    nightly = header["schedules"][0]
    assert (nightly["name"], nightly["queue"], nightly["webhookAuth"]) == (
        "nightly",
        "mail",
        SECRET,
    )

    imported = run_cli(None, "import", str(export_file), env=_env(postgres_target, new_key))
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 tasks" in imported.stderr
    assert "queues: 1 created (mail), 2 already here (default, reports)" in imported.stderr
    assert "runtime config of the queues already here left as it is" in imported.stderr
    assert (
        "schedules: 1 created (nightly), 1 already here (weekly), left as it is" in imported.stderr
    )
    assert SECRET not in imported.stderr + imported.stdout
    assert _queues(postgres_target) == {
        "default": (False, 100, 0),
        "mail": (True, 100, 50),
        "reports": (False, 3, 0),  # left as it was
    }
    assert _tasks(postgres_target) == {
        ids["mail"]: ("mail", "nightly", "pending"),
        ids["reports"]: ("reports", None, "pending"),
        ids["gone"]: ("gone", None, "resolved"),  # finished: its queue need not exist
    }
    [(stored, cron, next_fire)] = query(
        postgres_target,
        "SELECT webhook_auth, cron, next_fire_at FROM scheduler_schedules WHERE name = 'nightly'",
    )
    assert AuthCipher([new_key]).open(stored) == SECRET and stored.startswith("fernet:")
    assert (cron, next_fire) == ("0 3 * * *", FIRE)
    assert query(postgres_target, "SELECT cron FROM scheduler_schedules WHERE name = 'weekly'") == [
        ("30 5 * * *",)
    ]

    # --config: the queues already here take the exported config (pause state stays).
    again = run_cli(
        None, "import", str(export_file), "--config", env=_env(postgres_target, new_key)
    )
    assert again.returncode == 0, again.stderr
    assert "imported 0 tasks; 3 already here" in again.stderr
    assert "runtime config replaced with the exported one" in again.stderr
    assert _queues(postgres_target)["reports"] == (False, 40, 0)


def test_a_live_task_or_schedule_in_a_queue_neither_in_the_file_nor_here_is_refused(
    tmp_path: Path,
) -> None:
    require_backend("sqlite", server=False)
    key = generate_key()
    source, ids = _source(tmp_path, key)
    exported = run_cli(None, "export", "--include-finished", env=_env(source, key))
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines(keepends=True)
    header = json.loads(lines[0])
    header["queues"] = [q for q in header["queues"] if q["name"] != "mail"]
    without_mail = json.dumps(header) + "\n" + "".join(lines[1:])
    target = sqlite_url(tmp_path, "target.db")

    refused = run_cli(None, "import", "-", "--create", env=_env(target, None), input=without_mail)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert (
        "nothing imported: 1 queue neither in the file nor in this database: 'mail' "
        "(1 live task, the first on line 2, schedule nightly)"
    ) in message
    assert query(target, "SELECT count(*) FROM scheduler_tasks") == [(0,)]
    assert query(target, "SELECT count(*) FROM scheduler_schedules") == [(0,)]
    assert set(_queues(target)) == {"default"}

    # Made here first, the queue takes the tasks, its own config kept.
    _insert(target, "scheduler_config", queue="mail", select_size=9)
    done = run_cli(None, "import", "-", env=_env(target, None), input=without_mail)
    assert done.returncode == 0, done.stderr
    assert "queues: 1 created (reports), 1 already here (default)" in done.stderr
    assert _tasks(target)[ids["mail"]] == ("mail", "nightly", "pending")
    assert _queues(target)["mail"] == (False, 9, 0)


def test_a_file_of_format_version_1_imports_into_default(tmp_path: Path) -> None:
    """As the release before queues wrote it: the one config in the header, no schedule
    on the task lines."""
    require_backend("sqlite", server=False)
    task_id = "0b7f6f1e-4a5e-4c3b-9d6e-2f1a3b4c5d6e"
    config = {
        "baseIntervalMs": 500,
        "httpCallbackTimeoutMs": 5000,
        "selectSize": 17,
        "maxRetries": 5,
        "retryBackoffMs": 1000,
        "retryBackoffMaxMs": 3600000,
        "retentionHours": 168,
    }
    header = {
        "format": "scheduler-core-export",
        "version": 1,
        "dialect": "postgresql",
        "exportedAt": "2026-01-01T00:00:00.000000Z",
        "statuses": ["pending", "running", "stale"],
        "config": config,
    }
    task = {
        "id": task_id,
        "queue": "default",
        "webhookUrl": "http://127.0.0.1:9/old",
        "webhookAuth": "Bearer old-format",
        "payloadJson": '{"b": 1, "a": 2}',
        "executeAt": "2030-01-01T00:00:00.000000Z",
        "nextAttemptAt": "2030-01-01T00:00:00.000000Z",
        "status": "pending",
        "attempts": 0,
        "budgetStart": 0,
        "maxRetries": None,
        "hasFailed": False,
        "idempotencyKey": "v1-key",
        "lastError": None,
        "lastStatusCode": None,
        "createdAt": "2025-12-31T23:59:59.999999Z",
        "updatedAt": "2025-12-31T23:59:59.999999Z",
        "resolvedAt": None,
        "attemptHistory": [],
    }
    text = "".join(json.dumps(x) + "\n" for x in (header, task, {"end": True, "tasks": 1}))
    target = sqlite_url(tmp_path, "v1.db")
    assert run_cli(target, "migrate", "--create").returncode == 0
    TestDatabase(target).execute("UPDATE scheduler_config SET max_dispatches_per_second = 5")

    done = run_cli(None, "import", "-", "--config", env=_env(target, None), input=text)

    assert done.returncode == 0, done.stderr
    assert "(format version 1: every task in `default`)" in done.stderr
    assert "imported 1 task" in done.stderr
    assert _tasks(target) == {task_id: ("default", None, "pending")}
    assert query(target, "SELECT payload, webhook_auth FROM scheduler_tasks") == [
        ('{"b": 1, "a": 2}', "Bearer old-format")
    ]
    # The keys the file holds are replaced; the one it predates is left as it was.
    assert _queues(target)["default"] == (False, 17, 5)


def test_rotate_key_reencrypts_the_schedules_auth_too(tmp_path: Path) -> None:
    require_backend("sqlite", server=False)
    old, new, lost = generate_key(), generate_key(), generate_key()
    url = sqlite_url(tmp_path, "keys.db")
    assert run_cli(url, "migrate", "--create").returncode == 0
    _schedule(url, "a-plain", webhook_auth="Bearer plain")
    _schedule(url, "b-old", webhook_auth=AuthCipher([old]).seal("Bearer old"))
    _schedule(url, "c-none")
    env = {"SCHEDULER_ENCRYPTION_KEY": f"{new},{old}"}

    done = run_cli(url, "rotate-key", env=env)

    assert done.returncode == 0, done.stderr
    assert "0 stored webhookAuth values" in done.stdout  # no task holds one
    assert (
        "2 stored schedule webhookAuth values: 1 plaintext encrypted, 1 re-encrypted with the "
        "first key, 0 already current"
    ) in done.stdout
    stored = dict(query(url, "SELECT name, webhook_auth FROM scheduler_schedules"))
    assert AuthCipher([new]).open(stored["a-plain"]) == "Bearer plain"
    assert AuthCipher([new]).open(stored["b-old"]) == "Bearer old"
    assert stored["c-none"] is None
    assert "Bearer" not in done.stdout + done.stderr

    _schedule(url, "d-lost", webhook_auth=AuthCipher([lost]).seal("Bearer lost"))
    refused = run_cli(url, "rotate-key", env=env)
    assert refused.returncode == 1
    assert "2 already current" in refused.stdout
    assert "left as they are (schedule d-lost)" in refused.stderr
