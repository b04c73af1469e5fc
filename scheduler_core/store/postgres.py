"""The PostgreSQL store: psycopg2, a blocking pool, SQL from `sql/postgresql.sql`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extras

from scheduler_core.migrations import load as load_migrations
from scheduler_core.models import (
    AttemptRecord,
    ClaimedTask,
    NewTask,
    RecordedOutcome,
    Task,
    TaskStatus,
)
from scheduler_core.runtime_config import ConfigError, RuntimeConfig
from scheduler_core.store.base import TaskConflict, TaskNotFound
from scheduler_core.store.pool import ConnectionPool, first_line
from scheduler_core.store.sqlfiles import queries_for

log = logging.getLogger(__name__)

# Any constant shared by every process of every version; serialises migrations.
MIGRATION_LOCK_ID = 0x5C4ED01E
LEASE_EXPIRED_ERROR = "lease expired: the dispatcher stopped before recording an outcome"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def _load_queries() -> dict[str, str]:
    raw = queries_for("postgresql")
    columns = raw["task_columns"]
    return {name: sql.replace("{task_columns}", columns) for name, sql in raw.items()}


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 10):
        dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
        self.pool = ConnectionPool(
            dsn,
            size=pool_size,
            connect_timeout=5,
            application_name="scheduler-core",
            options="-c timezone=UTC",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        self.q = _load_queries()

    @contextmanager
    def _tx(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        with self.pool.connection() as conn:
            try:
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    yield cur
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    def close(self) -> None:
        self.pool.close()

    def ping(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT 1")

    # -- migrations ----------------------------------------------------------------

    def migrate(self) -> list[str]:
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
                    for migration in load_migrations(self.dialect):
                        if migration.version in done:
                            continue
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

    # -- API verbs -----------------------------------------------------------------

    def enqueue(self, tasks: Sequence[NewTask]) -> list[tuple[Task, bool]]:
        results: list[tuple[Task, bool]] = []
        with self._tx() as cur:
            for new in tasks:
                cur.execute(self.q["insert_task"], _insert_params(new))
                row = cur.fetchone()
                if row is not None:
                    results.append((_task(row), True))
                    continue
                cur.execute(
                    self.q["get_task_by_idempotency_key"],
                    {"idempotency_key": new.idempotency_key},
                )
                existing = cur.fetchone()
                assert existing is not None, "ON CONFLICT skipped a row that is not there"
                results.append((_task(existing), False))
        return results

    def get(self, task_id: str) -> Task | None:
        if not _UUID.match(task_id):
            return None
        with self._tx() as cur:
            cur.execute(self.q["get_task"], {"id": task_id})
            row = cur.fetchone()
        return _task(row) if row else None

    def list_tasks(
        self, status: TaskStatus | None, limit: int, before: int | None
    ) -> tuple[list[Task], int | None]:
        params = {"status": status.value if status else None, "before": before, "limit": limit + 1}
        with self._tx() as cur:
            cur.execute(self.q["list_tasks"], params)
            rows = cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_task(r) for r in rows], (rows[-1]["seq"] if more and rows else None)

    def attempts(self, task_id: str) -> list[AttemptRecord] | None:
        if not _UUID.match(task_id):
            return None
        with self._tx() as cur:
            cur.execute(self.q["task_exists"], {"id": task_id})
            if cur.fetchone() is None:
                return None
            cur.execute(self.q["list_attempts"], {"id": task_id})
            return [AttemptRecord(**row) for row in cur.fetchall()]

    def cancel(self, task_id: str) -> Task:
        return self._transition(task_id, "cancel_task", TaskStatus.CANCELLED)

    def retry(self, task_id: str) -> Task:
        return self._transition(task_id, "retry_task", None)

    def _transition(self, task_id: str, query: str, unchanged_if: TaskStatus | None) -> Task:
        if not _UUID.match(task_id):
            raise TaskNotFound(task_id)
        with self._tx() as cur:
            cur.execute(self.q[query], {"id": task_id})
            row = cur.fetchone()
            if row is None:
                cur.execute(self.q["get_task"], {"id": task_id})
                row = cur.fetchone()
                if row is None:
                    raise TaskNotFound(task_id)
                task = _task(row)
                if task.status != unchanged_if:
                    raise TaskConflict(task, f"the task is {task.status.value}")
        return _task(row)

    def get_config(self) -> RuntimeConfig:
        with self._tx() as cur:
            cur.execute(self.q["get_config"])
            row = cur.fetchone()
        return RuntimeConfig(**row) if row else RuntimeConfig()

    def update_config(self, columns: dict[str, int]) -> RuntimeConfig:
        if columns:
            # Column names come from runtime_config.BOUNDS, never from the request.
            assignments = ", ".join(f"{name} = %({name})s" for name in columns)
            try:
                with self._tx() as cur:
                    cur.execute(
                        f"UPDATE scheduler_config SET {assignments}, updated_at = now()", columns
                    )
            except psycopg2.IntegrityError as exc:  # a concurrent change broke a CHECK
                raise ConfigError({"_schema": [first_line(exc)]}) from None
        return self.get_config()

    # -- dispatcher verbs ----------------------------------------------------------

    def reap_expired_leases(self, config: RuntimeConfig) -> int:
        with self._tx() as cur:
            cur.execute(
                self.q["reap_expired_leases"],
                {"max_retries": config.max_retries, "error": LEASE_EXPIRED_ERROR},
            )
            reaped = cur.fetchall()
        for row in reaped:
            log.warning("task=%s lease expired; it will be claimed again", row["task_id"])
        return len(reaped)

    def claim_due(self, limit: int, lease_ms: int) -> list[ClaimedTask]:
        with self._tx() as cur:
            cur.execute(self.q["claim_due"], {"limit": limit, "lease_ms": lease_ms})
            rows = cur.fetchall()
        return [
            ClaimedTask(
                id=r["id"],
                webhook_url=r["webhook_url"],
                webhook_auth=r["webhook_auth"],
                execute_at=r["execute_at"],
                payload_json=r["payload_json"],
                attempt=r["attempts"],
                attempts_in_budget=r["attempts_in_budget"],
                max_retries=r["max_retries"],
            )
            for r in rows
        ]

    def record_outcomes(self, outcomes: Sequence[RecordedOutcome]) -> None:
        resolved, failed, attempts = [], [], []
        for item in outcomes:
            o = item.outcome
            key = {"id": item.task_id, "attempt": item.attempt}
            attempts.append(
                {
                    **key,
                    "duration_ms": o.duration_ms,
                    "status_code": o.status_code,
                    "error": o.error,
                }
            )
            if item.decision is None:
                resolved.append({**key, "status_code": o.status_code})
            else:
                failed.append(
                    {
                        **key,
                        "stale": item.decision.is_stale,
                        "retry_in_ms": item.decision.retry_in_ms or 0,
                        "error": o.error,
                        "status_code": o.status_code,
                    }
                )
        with self._tx() as cur:
            psycopg2.extras.execute_batch(cur, self.q["resolve_task"], resolved, page_size=200)
            psycopg2.extras.execute_batch(cur, self.q["fail_task"], failed, page_size=200)
            psycopg2.extras.execute_batch(cur, self.q["finish_attempt"], attempts, page_size=200)

    def purge_expired(self, retention_hours: int, batch_size: int) -> int:
        with self._tx() as cur:
            cur.execute(
                self.q["purge_expired"],
                {"retention_hours": retention_hours, "batch_size": batch_size},
            )
            return int(cur.rowcount)


def _insert_params(new: NewTask) -> dict[str, Any]:
    return {
        "webhook_url": new.webhook_url,
        "webhook_auth": new.webhook_auth,
        "payload": json.dumps(new.payload, ensure_ascii=False),
        "execute_at": new.execute_at,
        "idempotency_key": new.idempotency_key,
        "max_retries": new.max_retries,
    }


def _task(row: dict[str, Any]) -> Task:
    return Task(
        id=row["id"],
        webhook_url=row["webhook_url"],
        execute_at=row["execute_at"],
        status=TaskStatus(row["status"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        next_attempt_at=row["next_attempt_at"],
        payload=row["payload"],
        idempotency_key=row["idempotency_key"],
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        resolved_at=row["resolved_at"],
    )
