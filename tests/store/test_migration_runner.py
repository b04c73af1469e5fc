"""The migration runner keeps rows safe: a SQLite table rebuild (create, copy, drop,
rename, as a CHECK change needs) loses no attempt through ON DELETE CASCADE, a migration
that leaves a row pointing nowhere or fails half way changes nothing, and two processes
migrating one old database at once end with one correct schema and every row."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg2
import pytest

from scheduler_core.migrations import Migration
from scheduler_core.migrations import load as load_migrations
from scheduler_core.store import StoreError, open_store
from scheduler_core.store.postgres import MIGRATION_LOCK_ID
from scheduler_core.store.sqlite import split_statements, sqlite_path
from tests.store.databases import dialect_of, query, require_backend, table_names
from tests.store.old_schema import (
    ATTEMPT_COLUMNS_0001,
    OldData,
    attempt_rows,
    fill_first_schema,
    migrate_to,
    task_rows,
    versions,
)
from tests.store.schema import describe_schema, expected_schema
from tests.support.processes import SchedulerProcess
from tests.support.waiting import wait_until

KNOWN = load_migrations("sqlite")
NEXT = len(KNOWN) + 1
TASK_COLUMNS = (
    "seq, id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at, status,"
    " attempts, budget_start, max_retries, has_failed, idempotency_key, last_error,"
    " last_status_code, lease_expires_at, created_at, updated_at, resolved_at, queue, schedule"
)
# What a future migration changing a CHECK of scheduler_tasks has to do on SQLite (here: a
# status more), the documented way: new table, copy, drop the old one, rename, indexes.
REBUILD_TASKS = f"""
CREATE TABLE scheduler_tasks_new (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    webhook_url       TEXT NOT NULL,
    webhook_auth      TEXT,
    payload           TEXT NOT NULL DEFAULT 'null',
    execute_at        INTEGER NOT NULL,
    next_attempt_at   INTEGER NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'resolved', 'stale', 'cancelled',
                                        'archived')),
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    budget_start      INTEGER NOT NULL DEFAULT 0 CHECK (budget_start >= 0),
    max_retries       INTEGER CHECK (max_retries BETWEEN 0 AND 1000),
    has_failed        INTEGER NOT NULL DEFAULT 0 CHECK (has_failed IN (0, 1)),
    idempotency_key   TEXT,
    last_error        TEXT,
    last_status_code  INTEGER,
    lease_expires_at  INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    resolved_at       INTEGER,
    queue             TEXT NOT NULL DEFAULT 'default',
    schedule          TEXT,
    CHECK (status <> 'running' OR lease_expires_at IS NOT NULL)
);
INSERT INTO scheduler_tasks_new ({TASK_COLUMNS}) SELECT {TASK_COLUMNS} FROM scheduler_tasks;
DROP TABLE scheduler_tasks;
ALTER TABLE scheduler_tasks_new RENAME TO scheduler_tasks;
CREATE UNIQUE INDEX scheduler_tasks_idempotency_key
    ON scheduler_tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX scheduler_tasks_due
    ON scheduler_tasks (queue, has_failed, next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX scheduler_tasks_leases
    ON scheduler_tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX scheduler_tasks_status_seq ON scheduler_tasks (status, seq);
CREATE INDEX scheduler_tasks_retention
    ON scheduler_tasks (updated_at) WHERE status IN ('resolved', 'cancelled');
CREATE INDEX scheduler_tasks_running_queue ON scheduler_tasks (queue) WHERE status = 'running';
CREATE INDEX scheduler_tasks_queue_seq ON scheduler_tasks (queue, seq);
"""
# Deletes tasks with foreign keys off: their attempts are left pointing nowhere.
DANGLING = """
CREATE TABLE scheduler_marker (x INTEGER);
DELETE FROM scheduler_tasks WHERE status = 'resolved';
"""
ALL_ATTEMPT_COLUMNS = (*ATTEMPT_COLUMNS_0001, "outcome", "lateness_ms")
ALL_TASK_COLUMNS = tuple(c.strip() for c in TASK_COLUMNS.split(","))


def _extra(sql: str, name: str) -> list[Migration]:
    return [*KNOWN, Migration(NEXT, f"{NEXT:04d}_{name}.sql", sql)]


@pytest.fixture
def full_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, OldData]]:
    """A SQLite database at the latest schema, holding the old data (made at 0001)."""
    require_backend("sqlite", server=False)
    url = f"sqlite:///{tmp_path_factory.mktemp('rebuild') / 'full.db'}"
    migrate_to(url, 1)
    data = fill_first_schema(url, "http://127.0.0.1:9/hook")
    migrate_to(url)
    yield url, data


def _foreign_key_problems(url: str) -> list[tuple[object, ...]]:
    lite = sqlite3.connect(sqlite_path(url))
    try:
        return list(lite.execute("PRAGMA foreign_key_check").fetchall())
    finally:
        lite.close()


def test_a_sqlite_rebuild_of_the_tasks_table_keeps_every_attempt(
    full_sqlite: tuple[str, OldData],
) -> None:
    url, data = full_sqlite
    tasks, attempts = task_rows(url, ALL_TASK_COLUMNS), attempt_rows(url, ALL_ATTEMPT_COLUMNS)
    assert len(attempts) == 14

    store = open_store(url, pool_size=2)
    try:
        assert store.migrate(_extra(REBUILD_TASKS, "rebuild_tasks")) == [
            f"{NEXT:04d}_rebuild_tasks.sql"
        ]
        assert task_rows(url, ALL_TASK_COLUMNS) == tasks
        assert attempt_rows(url, ALL_ATTEMPT_COLUMNS) == attempts
        assert _foreign_key_problems(url) == []
        assert versions(url) == list(range(1, NEXT + 1))
        # The attempts refer to the new table: the store reads them through it, and
        # deleting a task (retention) still cascades to its attempts.
        history = store.attempts(data.ids["resolved"])
        assert history is not None and len(history) == 3
        assert store.purge_expired(retention_hours=1, batch_size=100) == 3
        assert store.attempts(data.ids["resolved"]) is None
        [(left,)] = query(url, "SELECT count(*) FROM scheduler_attempts")
        assert left == 14 - 3 - 3  # the two resolved tasks' attempts went with them
        assert _foreign_key_problems(url) == []
    finally:
        store.close()


def test_the_same_rebuild_with_foreign_keys_on_loses_every_attempt(
    full_sqlite: tuple[str, OldData],
) -> None:
    """Why the runner turns foreign keys off: run as any connection of the store runs
    (foreign keys on), DROP TABLE deletes the old rows first and ON DELETE CASCADE takes
    every attempt with them. The test above would catch a runner that did this."""
    url, _ = full_sqlite
    tasks = task_rows(url, ALL_TASK_COLUMNS)
    lite = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        lite.execute("PRAGMA foreign_keys = ON")
        lite.execute("BEGIN IMMEDIATE")
        for statement in split_statements(REBUILD_TASKS):
            lite.execute(statement)
        lite.execute("COMMIT")
    finally:
        lite.close()
    assert task_rows(url, ALL_TASK_COLUMNS) == tasks
    assert attempt_rows(url) == []


def test_a_migration_leaving_a_dangling_foreign_key_is_refused_and_changes_nothing(
    full_sqlite: tuple[str, OldData],
) -> None:
    url, data = full_sqlite
    tasks, attempts = task_rows(url, ALL_TASK_COLUMNS), attempt_rows(url, ALL_ATTEMPT_COLUMNS)
    schema = describe_schema(url)

    store = open_store(url, pool_size=2)
    try:
        with pytest.raises(StoreError) as raised:
            store.migrate(_extra(DANGLING, "dangling"))
        message = str(raised.value)
        assert f"{NEXT:04d}_dangling.sql" in message
        assert "6 rows breaking a foreign key" in message
        assert "scheduler_attempts" in message and "nothing was changed" in message

        assert task_rows(url, ALL_TASK_COLUMNS) == tasks
        assert attempt_rows(url, ALL_ATTEMPT_COLUMNS) == attempts
        assert "scheduler_marker" not in table_names(url)
        assert describe_schema(url) == schema
        assert versions(url) == list(range(1, NEXT))
        # The store's connections have foreign keys on again: retention cascades.
        assert store.purge_expired(retention_hours=1, batch_size=100) == 3
        assert store.attempts(data.ids["resolved"]) is None
        assert _foreign_key_problems(url) == []
        assert store.migrate() == []
    finally:
        store.close()


def test_a_migration_failing_half_way_changes_nothing(empty_database_url: str) -> None:
    url = empty_database_url
    migrate_to(url, 1)
    fill_first_schema(url, "http://127.0.0.1:9/hook")
    migrate_to(url)
    tasks = task_rows(url)
    broken = "CREATE TABLE scheduler_marker (x integer);\nUPDATE no_such_table SET x = 1;\n"
    known = load_migrations(dialect_of(url))
    store = open_store(url, pool_size=1)
    try:
        with pytest.raises(Exception, match="no_such_table"):
            store.migrate([*known, Migration(len(known) + 1, "0099_broken.sql", broken)])
    finally:
        store.close()
    assert "scheduler_marker" not in table_names(url)
    assert versions(url) == list(range(1, len(known) + 1))
    assert task_rows(url) == tasks


# -- two processes at once ---------------------------------------------------------------------


class _HeldLock:
    """Holds what the runner waits for (SQLite's write lock, PostgreSQL's advisory lock),
    so that two processes are both waiting to migrate before either may start."""

    def __init__(self, url: str):
        self.url = url
        self.dialect = dialect_of(url)
        if self.dialect == "sqlite":
            self.lite = sqlite3.connect(sqlite_path(url), isolation_level=None)
            self.lite.execute("BEGIN IMMEDIATE")
        else:
            self.pg = psycopg2.connect(url)
            self.pg.autocommit = True
            with self.pg.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))

    def waiting(self, processes: list[SchedulerProcess]) -> bool:
        if self.dialect == "sqlite":
            # Each logs this once SQLite's busy timeout has passed, and tries again.
            return all("waiting for the write lock" in p.output for p in processes)
        with self.pg.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            [(count,)] = cur.fetchall()
        return int(count) == len(processes)

    def release(self) -> None:
        if self.dialect == "sqlite":
            self.lite.execute("ROLLBACK")
            self.lite.close()
        else:
            with self.pg.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
            self.pg.close()


@pytest.mark.slow  # SQLite: the processes say they wait only after the 5 s busy timeout
def test_two_processes_migrating_one_old_database_at_once(empty_database_url: str) -> None:
    url = empty_database_url
    migrate_to(url, 1)
    data = fill_first_schema(url, "http://127.0.0.1:9/hook")
    tasks, attempts = task_rows(url), attempt_rows(url)
    names = [m.name for m in load_migrations(dialect_of(url))]

    lock = _HeldLock(url)
    released = False
    started = [SchedulerProcess(["migrate"], url) for _ in range(2)]
    try:
        wait_until(lambda: lock.waiting(started), 60, message="both processes waiting")
        lock.release()
        released = True
        codes = [p.wait_exit(60) for p in started]
    finally:
        if not released:
            lock.release()
        for p in started:
            p.stop()
    outputs = [p.output for p in started]
    assert codes == [0, 0], outputs
    # One applied the three migrations; the other found the schema up to date.
    applied = f"applied {len(names) - 1} migrations: {', '.join(names[1:])}"
    [other] = [o for o in outputs if applied not in o]
    assert "schema is up to date" in other and "applied migration" not in other, outputs

    assert versions(url) == list(range(1, len(names) + 1))
    assert describe_schema(url) == expected_schema(dialect_of(url))
    assert task_rows(url) == tasks
    assert attempt_rows(url) == attempts
    assert len(tasks) == len(data.ids)
    for p in started:
        p.log_path.unlink(missing_ok=True)
