"""Test databases of both backends, and direct SQL for what the API cannot do
(expire a lease, read the clock) written once per dialect."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.sqlite import from_micros, sqlite_path

ADMIN_URL = os.environ.get(
    "SCHEDULER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = tuple(
    b.strip()
    for b in os.environ.get("SCHEDULER_TEST_BACKENDS", "postgresql,sqlite").split(",")
    if b.strip()
)
SQLITE_NOW_US = "((CAST(round(julianday('now') * 86400000.0) AS INTEGER) - 210866760000000) * 1000)"


def postgres_unreachable_reason() -> str | None:
    """None when PostgreSQL answers at ADMIN_URL, else why not."""
    try:
        psycopg2.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def admin_connection() -> Any:
    conn = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


@contextmanager
def postgres_database(prefix: str = "scheduler_test") -> Iterator[str]:
    """An empty PostgreSQL database of its own, dropped (connections and all) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def sqlite_url(folder: Path, name: str = "scheduler.db") -> str:
    return f"sqlite:///{folder / name}"


class TestDatabase:
    """Direct SQL on a test database. Write queries with %s placeholders."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, url: str):
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"

    def execute(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run one statement in its own committed transaction; return its rows."""
        return self.execute_all([query], params)

    def execute_all(self, queries: list[str], params: Any = ()) -> list[tuple[Any, ...]]:
        """Run statements in one committed transaction; return the last one's rows."""
        rows: list[tuple[Any, ...]] = []
        if self.dialect == "postgresql":
            conn = psycopg2.connect(self.url)
            try:
                with conn, conn.cursor() as cur:
                    for query in queries:
                        cur.execute(query, params or None)
                        rows = cur.fetchall() if cur.description else []
                    return rows
            finally:
                conn.close()
        lite = sqlite3.connect(sqlite_path(self.url), timeout=30, isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
            for query in queries:
                rows = lite.execute(query.replace("%s", "?"), params).fetchall()
            lite.execute("COMMIT")
            return rows
        finally:
            lite.close()

    def sql(self, *, postgresql: str, sqlite: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self.execute(postgresql if self.dialect == "postgresql" else sqlite, params)

    def time(self, value: Any) -> datetime | None:
        """A time column's value as an aware datetime, whatever the dialect stores."""
        if value is None or isinstance(value, datetime):
            return value
        return from_micros(int(value))

    def now(self) -> datetime:
        [(now,)] = self.sql(postgresql="SELECT now()", sqlite=f"SELECT {SQLITE_NOW_US}")
        result = self.time(now)
        assert result is not None
        return result

    def expire_lease(self, task_id: str) -> None:
        self.sql(
            postgresql="UPDATE scheduler_tasks SET lease_expires_at = now() - interval '1 second'"
            " WHERE id = %s AND status = 'running'",
            sqlite=f"UPDATE scheduler_tasks SET lease_expires_at = {SQLITE_NOW_US} - 1000000"
            " WHERE id = %s AND status = 'running'",
            params=(task_id,),
        )

    def make_due(self, task_id: str) -> None:
        self.sql(
            postgresql="UPDATE scheduler_tasks SET next_attempt_at = now() WHERE id = %s",
            sqlite=f"UPDATE scheduler_tasks SET next_attempt_at = {SQLITE_NOW_US} WHERE id = %s",
            params=(task_id,),
        )

    def task_row(self, task_id: str) -> dict[str, Any]:
        """Every stored column of a task (times as datetimes, has_failed as bool)."""
        columns = (
            "status",
            "attempts",
            "budget_start",
            "has_failed",
            "next_attempt_at",
            "lease_expires_at",
            "updated_at",
            "webhook_auth",
        )
        [row] = self.execute(
            f"SELECT {', '.join(columns)} FROM scheduler_tasks WHERE id = %s", (task_id,)
        )
        data = dict(zip(columns, row, strict=True))
        for key in ("next_attempt_at", "lease_expires_at", "updated_at"):
            data[key] = self.time(data[key])
        data["has_failed"] = bool(data["has_failed"])
        return data

    def reset(self) -> None:
        """Empty the task and schedule tables, remove every queue but `default` and put its
        configuration back to its defaults, running, its token bucket empty."""
        defaults = RuntimeConfig().as_dict()
        assignments = ", ".join(f"{k} = {v}" for k, v in defaults.items())
        self.execute_all(
            [
                "DELETE FROM scheduler_attempts",
                "DELETE FROM scheduler_tasks",
                "DELETE FROM scheduler_schedules",
                "DELETE FROM scheduler_hosts",
                "DELETE FROM scheduler_config WHERE queue <> 'default'",
                # (1 = 0): false in PostgreSQL's boolean and SQLite's 0/1 alike
                f"UPDATE scheduler_config SET {assignments}, paused = (1 = 0), bucket_tokens = 0",
            ]
        )
