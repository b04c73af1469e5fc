"""A database at the first schema (migration 0001 only), filled through plain SQL the way
the first release left its tables: tasks in every status, with their attempt rows, and a
changed configuration row. Read back column by column, raw, as each driver returns them,
so that a migration that changes any stored value shows up in a comparison."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

from scheduler_core.migrations import load as load_migrations
from scheduler_core.store import open_store
from scheduler_core.store.sqlite import sqlite_path, to_micros
from tests.store.databases import dialect_of

# The columns of migration 0001, in its order (SQLite's seq first, PostgreSQL's second:
# both kept and compared).
TASK_COLUMNS_0001 = (
    "id",
    "seq",
    "webhook_url",
    "webhook_auth",
    "payload",
    "execute_at",
    "next_attempt_at",
    "status",
    "attempts",
    "budget_start",
    "max_retries",
    "has_failed",
    "idempotency_key",
    "last_error",
    "last_status_code",
    "lease_expires_at",
    "created_at",
    "updated_at",
    "resolved_at",
)
ATTEMPT_COLUMNS_0001 = (
    "task_id",
    "attempt",
    "started_at",
    "finished_at",
    "duration_ms",
    "status_code",
    "error",
)
CONFIG_COLUMNS_0001 = (
    "base_interval_ms",
    "http_callback_timeout_ms",
    "select_size",
    "max_retries",
    "retry_backoff_ms",
    "retry_backoff_max_ms",
    "retention_hours",
    "updated_at",
)
# Not the defaults (1000, 5000, 100, 5, 1000, 3600000, 168).
OLD_CONFIG = {
    "base_interval_ms": 250,
    "http_callback_timeout_ms": 7000,
    "select_size": 7,
    "max_retries": 9,
    "retry_backoff_ms": 2500,
    "retry_backoff_max_ms": 90000,
    "retention_hours": 48,
}

PAST = datetime(2024, 3, 31, 0, 59, 59, 123456, tzinfo=UTC)  # microseconds kept
FUTURE = datetime(2030, 1, 1, 9, 0, 0, 654321, tzinfo=UTC)
LEASE_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)  # a dispatcher "still delivering"
LEASE_EXPIRED = "lease expired: the dispatcher stopped before recording an outcome"

PAYLOADS = {
    "unicode": '{"name": "Zoë Ωmega 東京 🚀", "quote": "say \\"hi\\"\\n\\ttab"}',
    "nested": '{"z": [1, {"y": [true, false, null, {"x": []}]}], "a": {}}',
    "numbers": '{"big": 123456789012345678901234567890, "neg": -9223372036854775808}',
    "scalar": '"just a string"',
    "null": "null",
}
AUTH = {
    "due": "Bearer due-secret",  # sent as a header: latin-1 only
    "retry": "Basic cmV0cnk6c2VjcmV0",
    "running": "Bearer running-secret-Ω",  # never sent here
    "stale": "Bearer stale-secret",
}


@dataclass
class OldData:
    """What fill_first_schema stored: task ids by name, and each attempt's expected
    outcome after migration 0002's backfill, by (task id, attempt)."""

    ids: dict[str, str] = field(default_factory=dict)
    outcomes: dict[tuple[str, int], str | None] = field(default_factory=dict)
    payloads: dict[str, str] = field(default_factory=dict)  # task id -> stored JSON text
    auth: dict[str, str | None] = field(default_factory=dict)  # task id -> webhookAuth

    def due(self) -> list[str]:
        """The pending tasks whose time has come, in claim order (never failed first)."""
        return [self.ids["due"], self.ids["retry_due"], self.ids["retried_after_stale"]]


def migrate_to(url: str, version: int | None = None) -> list[str]:
    """Migrate `url` with the real store up to `version` (None: the latest)."""
    known = load_migrations(dialect_of(url))
    store = open_store(url, pool_size=1)
    try:
        return store.migrate(known if version is None else known[:version])
    finally:
        store.close()


def _at(minutes: int) -> datetime:
    return PAST + timedelta(minutes=minutes, microseconds=minutes)


def _tasks(webhook_url: str) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(name, task row, attempt rows with their expected outcome), in creation order."""

    def task(**values: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "webhook_url": webhook_url,
            "webhook_auth": None,
            "payload": PAYLOADS["null"],
            "execute_at": PAST,
            "next_attempt_at": PAST,
            "status": "pending",
            "attempts": 0,
            "budget_start": 0,
            "max_retries": None,
            "has_failed": False,
            "idempotency_key": None,
            "last_error": None,
            "last_status_code": None,
            "lease_expires_at": None,
            "created_at": PAST,
            "updated_at": PAST,
            "resolved_at": None,
        }
        row.update(values)
        return row

    def attempt(n: int, code: int | None, error: str | None, outcome: str | None) -> dict[str, Any]:
        started = _at(10 * n)
        row = {
            "attempt": n,
            "started_at": started,
            "finished_at": started + timedelta(milliseconds=321) if outcome else None,
            "duration_ms": 321 if outcome else None,
            "status_code": code,
            "error": error,
            "outcome": outcome,
        }
        return row

    return [
        (
            "resolved",
            task(
                status="resolved",
                attempts=3,
                has_failed=True,
                payload=PAYLOADS["nested"],
                last_status_code=204,
                updated_at=_at(31),
                resolved_at=_at(31),
            ),
            [
                attempt(1, 429, "HTTP 429", "failed"),
                attempt(2, None, "connection refused", "failed"),
                attempt(3, 204, None, "resolved"),
            ],
        ),
        (
            "resolved_odd_answers",  # shapes the backfill's CASE tells apart
            task(status="resolved", attempts=3, has_failed=True, resolved_at=_at(40)),
            [
                attempt(1, 302, None, "failed"),  # not 2xx, no error text
                attempt(2, 200, "response body over the limit", "failed"),  # 2xx with error
                attempt(3, 299, None, "resolved"),
            ],
        ),
        (
            "stale",
            task(
                status="stale",
                webhook_auth=AUTH["stale"],
                attempts=1,
                max_retries=0,
                has_failed=True,
                last_error="HTTP 500",
                last_status_code=500,
                payload=PAYLOADS["numbers"],
            ),
            [attempt(1, 500, "HTTP 500", "failed")],
        ),
        (
            "running",
            task(
                status="running",
                webhook_auth=AUTH["running"],
                attempts=3,
                has_failed=True,
                lease_expires_at=LEASE_UNTIL,
                last_error=LEASE_EXPIRED,
                payload=PAYLOADS["unicode"],
                idempotency_key="run-1",
            ),
            [
                attempt(1, None, LEASE_EXPIRED, "lost"),
                attempt(2, 503, "HTTP 503", "failed"),
                attempt(3, None, None, None),  # in flight: no outcome yet
            ],
        ),
        (
            "cancelled",
            task(status="cancelled", execute_at=FUTURE, next_attempt_at=FUTURE, max_retries=3),
            [],
        ),
        (
            "due",
            task(
                webhook_auth=AUTH["due"],
                payload=PAYLOADS["unicode"],
                idempotency_key="invoice-42-Ω",
                max_retries=7,
            ),
            [],
        ),
        (
            "retry_due",
            task(
                webhook_auth=AUTH["retry"],
                attempts=2,
                has_failed=True,
                last_error="timed out after 5000 ms",
                payload=PAYLOADS["nested"],
                next_attempt_at=_at(1),
            ),
            [
                attempt(1, 502, "HTTP 502", "failed"),
                attempt(2, None, "timed out after 5000 ms", "failed"),
            ],
        ),
        (
            "retried_after_stale",  # POST /retry: a fresh budget from attempt 2 on
            task(
                attempts=2,
                budget_start=2,
                has_failed=True,
                max_retries=1,
                last_error="HTTP 410",
                last_status_code=410,
                next_attempt_at=_at(2),
            ),
            [attempt(1, 410, "HTTP 410", "failed"), attempt(2, 410, "HTTP 410", "failed")],
        ),
        (
            "future",
            task(
                execute_at=FUTURE,
                next_attempt_at=FUTURE,
                payload=PAYLOADS["scalar"],
                idempotency_key="later",
            ),
            [],
        ),
        ("future_null", task(execute_at=FUTURE, next_attempt_at=FUTURE), []),
    ]


def _value(dialect: str, value: Any) -> Any:
    if dialect == "sqlite":
        if isinstance(value, datetime):
            return to_micros(value)
        if isinstance(value, bool):
            return int(value)
    return value


def fill_first_schema(url: str, webhook_url: str) -> OldData:
    """Fill a database at schema 0001 through plain SQL; a PostgreSQL task with a null
    payload stores SQL NULL (as the first release did), SQLite the text 'null'."""
    dialect = dialect_of(url)
    data = OldData()
    task_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    for name, row, attempts in _tasks(webhook_url):
        task_id = str(uuid.uuid4())
        data.ids[name] = task_id
        data.payloads[task_id] = row["payload"]
        data.auth[task_id] = row["webhook_auth"]
        stored = {"id": task_id, **row}
        if dialect == "postgresql" and name == "future_null":
            stored["payload"] = None
        task_rows.append(stored)
        for a in attempts:
            data.outcomes[(task_id, a["attempt"])] = a.pop("outcome")
            attempt_rows.append({"task_id": task_id, **a})
    config = {**OLD_CONFIG, "updated_at": _at(99)}
    _insert(url, task_rows, attempt_rows, config)
    return data


def _insert(
    url: str, tasks: list[dict[str, Any]], attempts: list[dict[str, Any]], config: dict[str, Any]
) -> None:
    dialect = dialect_of(url)
    task_columns = [c for c in TASK_COLUMNS_0001 if c != "seq"]
    config_set = ", ".join(f"{c} = %s" for c in config)
    statements: list[tuple[str, list[tuple[Any, ...]]]] = [
        (
            f"INSERT INTO scheduler_tasks ({', '.join(task_columns)})"
            f" VALUES ({', '.join('%s' for _ in task_columns)})",
            [tuple(_value(dialect, t[c]) for c in task_columns) for t in tasks],
        ),
        (
            f"INSERT INTO scheduler_attempts ({', '.join(ATTEMPT_COLUMNS_0001)})"
            f" VALUES ({', '.join('%s' for _ in ATTEMPT_COLUMNS_0001)})",
            [tuple(_value(dialect, a[c]) for c in ATTEMPT_COLUMNS_0001) for a in attempts],
        ),
        (
            f"UPDATE scheduler_config SET {config_set}",
            [tuple(_value(dialect, v) for v in config.values())],
        ),
    ]
    if dialect == "postgresql":
        conn = psycopg2.connect(url)
        try:
            with conn, conn.cursor() as cur:
                for query, rows in statements:
                    cur.executemany(query, rows)
        finally:
            conn.close()
        return
    lite = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        lite.execute("PRAGMA foreign_keys = ON")
        lite.execute("BEGIN IMMEDIATE")
        for query, rows in statements:
            lite.executemany(query.replace("%s", "?"), rows)
        lite.execute("COMMIT")
    finally:
        lite.close()


def _select(url: str, sql: str) -> list[tuple[Any, ...]]:
    if dialect_of(url) == "postgresql":
        conn = psycopg2.connect(url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()
    lite = sqlite3.connect(sqlite_path(url))
    try:
        return list(lite.execute(sql).fetchall())
    finally:
        lite.close()


def task_rows(url: str, columns: tuple[str, ...] = TASK_COLUMNS_0001) -> list[tuple[Any, ...]]:
    """Every task, `columns` raw as the driver returns them (PostgreSQL's json payload as
    its text, so the text itself is compared), in creation order."""
    pg = dialect_of(url) == "postgresql"
    shown = [f"{c}::text" if pg and c == "payload" else c for c in columns]
    return _select(url, f"SELECT {', '.join(shown)} FROM scheduler_tasks ORDER BY seq")


def attempt_rows(
    url: str, columns: tuple[str, ...] = ATTEMPT_COLUMNS_0001
) -> list[tuple[Any, ...]]:
    return _select(
        url, f"SELECT {', '.join(columns)} FROM scheduler_attempts ORDER BY task_id, attempt"
    )


def config_rows(url: str, columns: tuple[str, ...] = CONFIG_COLUMNS_0001) -> list[tuple[Any, ...]]:
    return _select(url, f"SELECT {', '.join(columns)} FROM scheduler_config")


def versions(url: str) -> list[int]:
    return [
        v for (v,) in _select(url, "SELECT version FROM scheduler_schema_migrations ORDER BY 1")
    ]
