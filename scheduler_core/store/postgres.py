"""The PostgreSQL store: psycopg2, a blocking pool, SQL from `sql/postgresql.sql`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.extensions

from scheduler_core.encryption import AuthCipher
from scheduler_core.migrations import Migration, pending
from scheduler_core.migrations import load as load_migrations
from scheduler_core.store.base import StoreError
from scheduler_core.store.changes import WAKE_WINDOW_S, ChangeFeed, Listener
from scheduler_core.store.group_commit import GroupCommit
from scheduler_core.store.hosts import with_host_claims
from scheduler_core.store.pg_listener import NotifyListener
from scheduler_core.store.pool import ConnectionPool, dsn_error_text
from scheduler_core.store.sql_store import Cursor, SqlStore
from scheduler_core.store.sqlfiles import queries_for

log = logging.getLogger(__name__)

# Any constant shared by every process of every version; serialises migrations.
MIGRATION_LOCK_ID = 0x5C4ED01E


def _load_queries() -> dict[str, str]:
    raw = queries_for("postgresql")
    columns = raw["task_columns"]
    window = f"{WAKE_WINDOW_S} seconds"
    queries = {
        name: sql.replace("{task_filter}", raw["task_filter"])
        .replace("{task_columns}", columns)
        .replace("{config_columns}", raw["config_columns"])
        .replace("{wake_window}", window)
        for name, sql in raw.items()
    }
    return with_host_claims(queries)  # claim_due and claim_due_hosts


def check_dsn(dsn: str) -> None:
    """ValueError, saying what is wrong without quoting the URL or its password, unless
    libpq can read `dsn`. (psycopg2 would say it on first connect, URL and all.)"""
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        reason = dsn_error_text(exc, dsn).removeprefix("invalid dsn: ")
        raise ValueError(f"invalid PostgreSQL URL: {reason}") from None


class DictRowCursor(psycopg2.extensions.cursor):
    """Rows as plain dicts keyed by column name. psycopg2's RealDictCursor fills each row
    in Python, a call per column; zipping the tuples psycopg2 makes in C costs a fraction
    of that, which shows when an insert returns 500 rows."""

    def _names(self) -> list[str]:
        return [column.name for column in self.description or ()]

    def fetchone(self) -> dict[str, Any] | None:  # type: ignore[override]
        row = super().fetchone()
        return None if row is None else dict(zip(self._names(), row, strict=True))

    def fetchmany(self, size: int | None = None) -> list[dict[str, Any]]:  # type: ignore[override]
        names = self._names()
        rows = super().fetchmany() if size is None else super().fetchmany(size)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def fetchall(self) -> list[dict[str, Any]]:  # type: ignore[override]
        names = self._names()
        return [dict(zip(names, row, strict=True)) for row in super().fetchall()]

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        names = self._names()
        for row in super().__iter__():
            yield dict(zip(names, row, strict=True))


class PostgresStore(SqlStore):
    dialect = "postgresql"
    integrity_error = psycopg2.IntegrityError
    statement_error = psycopg2.Error

    def __init__(self, url: str, pool_size: int = 10, cipher: AuthCipher | None = None):
        self._dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
        check_dsn(self._dsn)
        self.cipher = cipher
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": 5,
            "options": "-c timezone=UTC",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        # Named in pg_stat_activity, unless the URL or PGAPPNAME names the process.
        if "application_name" not in self._dsn and not os.environ.get("PGAPPNAME"):
            self._connect_kwargs["application_name"] = "scheduler-core"
        self.pool = ConnectionPool(self._dsn, size=pool_size, **self._connect_kwargs)
        self.q = _load_queries()
        self.changes = ChangeFeed()
        self.group_commit = GroupCommit(self._enqueue_group, name="enqueue-commit")

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with self.pool.connection() as conn:
            try:
                with conn.cursor(cursor_factory=DictRowCursor) as cur:
                    yield cur
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    @contextmanager
    def _snapshot(self) -> Iterator[Cursor]:
        # Read committed would let each page of an export see a newer database.
        with self._tx() as cur:
            cur.execute(self.q["begin_snapshot"])
            yield cur

    def _time(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]  # timestamptz arrives as aware datetime

    def _payload(self, value: Any) -> Any:
        return value  # psycopg2 parses json columns

    def _time_param(self, moment: datetime) -> str:
        # In UTC: PostgreSQL refuses the offsets beyond ±15:59 that RFC 3339 and Python
        # allow ("-18:38" would be a 500).
        return moment.astimezone(UTC).isoformat()

    def _keys_param(self, keys: list[str]) -> dict[str, list[str]]:
        return {"keys": keys}

    def _held_param(self, hosts: Collection[str]) -> list[str] | None:
        return sorted(hosts) or None

    def _placeholder(self, name: str) -> str:
        return f"%({name})s"

    def _write_outcomes(self, cur: Cursor, rows: list[dict[str, Any]]) -> None:
        cur.execute(self.q["record_outcomes"], {"outcomes": json.dumps(rows)})

    def _watch_other_processes(self, listener: Listener) -> NotifyListener:
        return NotifyListener(self._dsn, self._connect_kwargs, listener)

    def close(self) -> None:
        self.group_commit.close()
        self.pool.close()

    def migrate(self, migrations: Sequence[Migration] | None = None) -> list[str]:
        known = load_migrations(self.dialect) if migrations is None else migrations
        applied: list[str] = []
        with self.pool.connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
                try:
                    cur.execute(
                        "CREATE TABLE IF NOT EXISTS scheduler_schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    cur.execute("SELECT version FROM scheduler_schema_migrations")
                    done = {row[0] for row in cur.fetchall()}
                    try:
                        todo = pending(known, done)
                    except ValueError as exc:
                        raise StoreError(f"PostgreSQL database: {exc}") from None
                    for migration in todo:
                        cur.execute("BEGIN")
                        try:
                            cur.execute(migration.sql)
                            cur.execute(
                                "INSERT INTO scheduler_schema_migrations (version, name)"
                                " VALUES (%s, %s)",
                                (migration.version, migration.name),
                            )
                            cur.execute("COMMIT")
                        except BaseException:
                            cur.execute("ROLLBACK")
                            raise
                        log.info("applied migration %s", migration.name)
                        applied.append(migration.name)
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
        return applied
