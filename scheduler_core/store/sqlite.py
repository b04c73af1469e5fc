"""The SQLite store: the embedded default, on the standard library's sqlite3.

WAL mode lets readers go on while one writer writes. Every write transaction starts
with BEGIN IMMEDIATE, so a claim takes the write lock before it reads what is due: two
processes on one file can never claim the same task. Lock waits are absorbed by a busy
timeout, and a transaction that still finds the file locked is retried.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scheduler_core.encryption import AuthCipher
from scheduler_core.migrations import Migration, pending
from scheduler_core.migrations import load as load_migrations
from scheduler_core.redaction import masked_url
from scheduler_core.store.base import StoreError, StoreUnavailable
from scheduler_core.store.changes import ChangeFeed, Listener
from scheduler_core.store.group_commit import GroupCommit
from scheduler_core.store.hosts import held_json, with_host_claims
from scheduler_core.store.sql_store import Cursor, Row, SqlStore
from scheduler_core.store.sqlfiles import queries_for
from scheduler_core.store.sqlite_watch import DataVersionWatcher

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINIMUM_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING
BUSY_TIMEOUT_S = 5.0  # one wait for the write lock, inside SQLite
LOCKED_RETRY_S = 30.0  # how long a transaction keeps retrying a locked file in all


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` -> relative.db, `sqlite:////abs/x.db` -> /abs/x.db."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.lower().startswith("sqlite") or not rest.startswith("/"):
        raise ValueError(f"not a SQLite URL: {masked_url(url)!r} (use sqlite:///path/to.db)")
    path = rest[1:].split("?", 1)[0]
    if path in {"", ":memory:"}:
        raise ValueError(
            "an in-memory SQLite database cannot be shared by the API and the dispatcher; "
            "name a file: sqlite:///scheduler.db"
        )
    return path


def create_private(path: str) -> bool:
    """Create the database file at `path`, readable and writable by its owner only (0600),
    unless something is there already, whose mode is then the operator's and left alone;
    True if it was created. SQLite gives the -wal and -shm files it creates the mode of
    the database file."""
    if os.path.lexists(path):
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return False
    os.close(fd)
    return True


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _load_queries() -> dict[str, str]:
    raw = queries_for("sqlite")
    columns = raw["task_columns"]
    queries = {
        name: sql.replace("{task_filter}", raw["task_filter"])
        .replace("{task_columns}", columns)
        .replace("{config_columns}", raw["config_columns"])
        # Outside a write transaction scheduler_now() is NULL: SQLite's own clock then.
        .replace("{now}", f"coalesce(scheduler_now(), ({raw['now']}))")
        .replace("{clock}", f"({raw['now']})")
        for name, sql in raw.items()
    }
    return with_host_claims(queries)  # claim_due and claim_due_hosts


class _TransactionClock:
    """`{now}` in the queries, as the SQL function scheduler_now(): the database clock
    read once when a write transaction begins, as PostgreSQL's now() is. Every time one
    transaction writes is then the same instant: a failed attempt's finishedAt and the
    task's nextAttemptAt, a claim's lease and the attempt's startedAt. (SQLite's own
    'now' changes from one statement to the next.)"""

    def __init__(self) -> None:
        self.now: int | None = None

    def set(self, now: int | None) -> None:
        self.now = now

    def read(self) -> int | None:
        # None outside a write transaction: the query falls back on SQLite's clock, never
        # on Python's (whose wall clock may be stepped, or shimmed, apart from SQLite's).
        return self.now


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteStore(SqlStore):
    dialect = "sqlite"
    integrity_error = sqlite3.IntegrityError
    statement_error = sqlite3.Error

    def __init__(self, url: str, pool_size: int = 10, cipher: AuthCipher | None = None):
        if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
            raise StoreUnavailable(
                f"SQLite {sqlite3.sqlite_version} is too old: scheduler-core needs "
                f"{'.'.join(map(str, MINIMUM_SQLITE))} or newer"
            )
        # Resolved once: connections open lazily, and a later chdir must not move them.
        self.path = str(Path(sqlite_path(url)).absolute())
        parent = Path(self.path).resolve().parent
        if not parent.is_dir():
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {parent} is missing")
        self.q = _load_queries()
        self.cipher = cipher
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.changes = ChangeFeed()
        self.group_commit = GroupCommit(self._enqueue_group, name="enqueue-commit")

    # -- connections ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            create_private(self.path)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged enqueue survives a power cut, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            clock = _TransactionClock()
            conn.create_function("scheduler_now", 0, clock.read)
            conn.create_function("scheduler_set_now", 1, clock.set)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            conn.execute("SELECT scheduler_set_now(NULL)")  # the transaction's {now} ends
            with self._lock:
                self._idle.append(conn)

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with self._connection() as conn:
            self._begin(conn)
            try:
                yield conn.cursor()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        # A deferred transaction: one consistent snapshot, and no wait for the write lock
        # (in WAL mode readers and the writer do not block each other).
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn.cursor()
            finally:
                conn.execute("ROLLBACK")

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting out other writers; StoreUnavailable if they never end."""
        deadline = time.monotonic() + LOCKED_RETRY_S
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() >= deadline:
                    raise StoreUnavailable(f"SQLite database {self.path}: {exc}") from exc
                log.warning("SQLite database is busy; waiting for the write lock")
        # {now} of this transaction, read under the write lock (see _TransactionClock).
        conn.execute(f"SELECT scheduler_set_now({queries_for('sqlite')['now']})")

    def close(self) -> None:
        self.group_commit.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- how SQLite spells things ---------------------------------------------------

    def _time(self, value: Any) -> datetime:
        return from_micros(int(value))

    def _payload(self, value: Any) -> Any:
        return json.loads(value) if value is not None else None

    def _time_param(self, moment: datetime) -> int:
        return to_micros(moment)

    def _keys_param(self, keys: list[str]) -> dict[str, str]:
        return {"keys": json.dumps(keys)}

    def _held_param(self, hosts: Collection[str]) -> str | None:
        return held_json(hosts)

    def _placeholder(self, name: str) -> str:
        return f":{name}"

    def _status_list_param(self, statuses: Sequence[str]) -> str:
        return json.dumps(list(statuses))

    def _ids_param(self, ids: Sequence[str]) -> str:
        return json.dumps(list(ids))

    def _batch(self, cur: Cursor, query: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            cur.executemany(query, rows)  # type: ignore[attr-defined]

    def _write_outcomes(self, cur: Cursor, rows: list[dict[str, Any]]) -> None:
        params = {"outcomes": json.dumps(rows)}
        cur.execute(self.q["record_task_outcomes"], params)
        cur.execute(self.q["record_attempt_outcomes"], params)

    def _watch_other_processes(self, listener: Listener) -> DataVersionWatcher:
        return DataVersionWatcher(self.path, listener)

    def _claim(self, cur: Cursor, limit: int, lease_ms: int, queue: str) -> list[Row]:
        rows = super()._claim(cur, limit, lease_ms, queue)
        self._batch(
            cur, self.q["start_attempt"], [{"id": r["id"], "attempt": r["attempts"]} for r in rows]
        )
        return rows

    # -- verbs SQLite spells its own way ---------------------------------------------

    def migrate(self, migrations: Sequence[Migration] | None = None) -> list[str]:
        known = load_migrations(self.dialect) if migrations is None else migrations
        applied: list[str] = []
        with self._connection() as conn:
            # Off outside the transaction (SQLite ignores the pragma inside one): a table
            # rebuilt by a migration (create, copy, drop, rename) must not cascade the
            # drop into the rows that refer to it, as ON DELETE CASCADE would.
            conn.execute("PRAGMA foreign_keys = OFF")
            try:
                self._begin(conn)  # the write lock serialises processes migrating at once
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS scheduler_schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    f" applied_at INTEGER NOT NULL DEFAULT ({queries_for('sqlite')['now']}))"
                )
                done = {
                    r[0] for r in conn.execute("SELECT version FROM scheduler_schema_migrations")
                }
                try:
                    todo = pending(known, done)
                except ValueError as exc:
                    raise StoreError(f"SQLite database {self.path}: {exc}") from None
                for migration in todo:
                    for statement in split_statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO scheduler_schema_migrations (version, name) VALUES (?, ?)",
                        (migration.version, migration.name),
                    )
                    applied.append(migration.name)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:  # a rebuild left a row pointing nowhere: keep the old schema
                    raise StoreError(
                        f"migration {', '.join(applied)} left {len(broken)} rows breaking a "
                        f"foreign key (first in table {broken[0][0]}, which refers to "
                        f"{broken[0][2]}); rolled back: nothing was changed and no version "
                        "recorded"
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.execute("PRAGMA foreign_keys = ON")
        for name in applied:
            log.info("applied migration %s", name)
        return applied


def split_statements(script: str) -> list[str]:
    """A migration script as single statements: sqlite3 runs one per execute(), and
    executescript() would commit the migration's transaction half way."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if any(line.strip() and not line.strip().startswith("--") for line in pending.splitlines()):
        raise ValueError(f"incomplete statement at the end of a migration: {pending[:80]!r}")
    return statements
