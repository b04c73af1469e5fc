"""The export and import verbs of the SQL stores (`scheduler export` / `scheduler import`),
written once for both backends over their named queries (sql/<dialect>.transfer.sql), as
sql_store.py's verbs are."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduler_core.encryption import AuthCipher
from scheduler_core.models import TaskStatus
from scheduler_core.runtime_config import BOUNDS
from scheduler_core.status_codes import codes_of, codes_text
from scheduler_core.store.changes import ChangeFeed
from scheduler_core.target_host import target_host
from scheduler_core.transfer import (
    MOVED_WHILE_RUNNING,
    ExportCounts,
    ExportedAttempt,
    ExportedQueue,
    ExportedSchedule,
    ExportedTask,
    ImportResult,
)

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor, Row, SqlStore


def export_counts(store: SqlStore) -> ExportCounts:
    with store._read() as cur:
        cur.execute(store.q["export_counts"])
        rows = cur.fetchall()
    by_status = {status: 0 for status in TaskStatus}
    expired = 0
    for row in rows:
        by_status[TaskStatus(row["status"])] = int(row["tasks"])
        expired += int(row["expired"] or 0)
    return ExportCounts(by_status=by_status, expired_leases=expired)


def export_tasks(
    store: SqlStore, statuses: frozenset[TaskStatus], batch_size: int = 500
) -> Iterator[ExportedTask]:
    wanted = store._status_list_param(sorted(s.value for s in statuses))
    with store._snapshot() as cur:
        after = 0
        while True:
            cur.execute(
                store.q["export_tasks"],
                {"statuses": wanted, "after": after, "limit": batch_size},
            )
            rows = cur.fetchall()
            if not rows:
                return
            after = rows[-1]["seq"]
            ids = [r["id"] for r in rows]
            cur.execute(store.q["export_attempts"], {"ids": store._ids_param(ids)})
            history: dict[str, list[ExportedAttempt]] = {}
            for a in cur.fetchall():
                history.setdefault(a["task_id"], []).append(_exported_attempt(store, a))
            for row in rows:
                yield _exported_task(store, row, history.get(row["id"], []))


def _exported_task(store: SqlStore, row: Row, history: list[ExportedAttempt]) -> ExportedTask:
    return ExportedTask(
        id=row["id"],
        webhook_url=row["webhook_url"],
        webhook_auth=row["webhook_auth"],
        payload_json=row["payload_json"],
        execute_at=store._time(row["execute_at"]),
        next_attempt_at=store._time(row["next_attempt_at"]),
        status=TaskStatus(row["status"]),
        attempts=row["attempts"],
        budget_start=row["budget_start"],
        max_retries=row["max_retries"],
        has_failed=bool(row["has_failed"]),
        idempotency_key=row["idempotency_key"],
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
        created_at=store._time(row["created_at"]),
        updated_at=store._time(row["updated_at"]),
        resolved_at=store._time(row["resolved_at"]) if row["resolved_at"] else None,
        history=tuple(history),
        queue=row["queue"],
        schedule=row["schedule"],
        not_after=store._time(row["not_after"]) if row["not_after"] is not None else None,
        success_codes=codes_of(row["success_codes"]),
        stale_codes=codes_of(row["stale_codes"]),
        traceparent=row["traceparent"],
    )


def _exported_attempt(store: SqlStore, row: Row) -> ExportedAttempt:
    return ExportedAttempt(
        attempt=row["attempt"],
        started_at=store._time(row["started_at"]),
        finished_at=store._time(row["finished_at"]) if row["finished_at"] else None,
        duration_ms=row["duration_ms"],
        status_code=row["status_code"],
        error=row["error"],
        outcome=row["outcome"],
        lateness_ms=row["lateness_ms"],
    )


def import_tasks(store: SqlStore, tasks: Sequence[ExportedTask]) -> ImportResult:
    if not tasks:
        return ImportResult()
    from scheduler_core.store.sql_store import stored_task_id  # sql_store imports this module

    ids = [stored_task_id(task.id) for task in tasks]
    rows = [_import_row(store, task_id, task) for task_id, task in zip(ids, tasks, strict=True)]
    with store._tx() as cur:
        cur.execute(store.q["import_tasks"], {"tasks": json.dumps(rows)})
        created = {row["id"] for row in cur.fetchall()}
        attempts = [
            _import_attempt_row(store, task_id, attempt)
            for task_id, task in zip(ids, tasks, strict=True)
            if task_id in created
            for attempt in task.history
        ]
        if attempts:
            cur.execute(store.q["import_attempts"], {"attempts": json.dumps(attempts)})
        skipped = [task_id for task_id in ids if task_id not in created]
        present: set[str] = set()
        if skipped:
            cur.execute(store.q["existing_task_ids"], {"ids": store._ids_param(skipped)})
            present = {row["id"] for row in cur.fetchall()}
        if created and "wake_dispatchers" in store.q:  # PostgreSQL: other processes too
            cur.execute(store.q["wake_dispatchers"])
    if created:
        store.changes.publish("due")
    return ImportResult(
        created=[task_id for task_id in ids if task_id in created],
        present=[task_id for task_id in skipped if task_id in present],
        key_taken=[task_id for task_id in skipped if task_id not in present],
    )


def _import_row(store: SqlStore, task_id: str, task: ExportedTask) -> dict[str, Any]:
    """A task as import_tasks reads it: its webhookAuth sealed with this database's key,
    and a running one pending (its lease belonged to the other database)."""
    auth = task.webhook_auth
    if auth is not None and store.cipher is not None:
        auth = store.cipher.seal(auth)
    running = task.status is TaskStatus.RUNNING
    resolved_at = task.resolved_at
    return {
        "id": task_id,
        "webhook_url": task.webhook_url,
        "webhook_auth": auth,
        "payload": task.payload_json,
        "execute_at": store._time_param(task.execute_at),
        "next_attempt_at": store._time_param(task.next_attempt_at),
        "status": TaskStatus.PENDING.value if running else task.status.value,
        "attempts": task.attempts,
        "budget_start": min(task.budget_start, task.attempts),
        "max_retries": task.max_retries,
        "has_failed": task.has_failed or running,
        "idempotency_key": task.idempotency_key,
        "last_error": MOVED_WHILE_RUNNING if running else task.last_error,
        "last_status_code": None if running else task.last_status_code,
        "created_at": store._time_param(task.created_at),
        "updated_at": store._time_param(task.updated_at),
        "resolved_at": store._time_param(resolved_at) if resolved_at else None,
        "queue": task.queue,
        "schedule": task.schedule,
        "not_after": store._time_param(task.not_after) if task.not_after else None,
        "success_codes": codes_text(task.success_codes),
        "stale_codes": codes_text(task.stale_codes),
        "traceparent": task.traceparent,
        "target_host": target_host(task.webhook_url),
    }


def _import_attempt_row(store: SqlStore, task_id: str, attempt: ExportedAttempt) -> dict[str, Any]:
    # An attempt in flight at export is finished at import, by the database clock, lost.
    finished = attempt.finished_at
    in_flight = finished is None
    return {
        "task_id": task_id,
        "attempt": attempt.attempt,
        "started_at": store._time_param(attempt.started_at),
        "finished_at": None if finished is None else store._time_param(finished),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": MOVED_WHILE_RUNNING if in_flight else attempt.error,
        "outcome": "lost" if in_flight else attempt.outcome,
        "lateness_ms": attempt.lateness_ms,
    }


class TransferVerbs:
    """Mixed into SqlStore: the queues and schedules of `scheduler export` / `import`."""

    q: dict[str, str]
    cipher: AuthCipher | None
    changes: ChangeFeed

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _time_param(self, moment: datetime) -> Any: ...

    def export_queues(self) -> list[ExportedQueue]:
        with self._read() as cur:
            cur.execute(self.q["export_queues"])
            rows = cur.fetchall()
        return [
            ExportedQueue(
                name=row["name"],
                columns={key: int(row[key]) for key in BOUNDS},
                paused=bool(row["paused"]),
            )
            for row in rows
        ]

    def export_schedules(self) -> list[ExportedSchedule]:
        with self._read() as cur:
            cur.execute(self.q["export_schedules"])
            rows = cur.fetchall()
        return [
            ExportedSchedule(
                name=row["name"],
                cron=row["cron"],
                timezone=row["timezone"],
                catch_up=row["catch_up"],
                paused=bool(row["paused"]),
                webhook_url=row["webhook_url"],
                webhook_auth=row["webhook_auth"],
                payload_json=row["payload_json"],
                queue=row["queue"],
                max_retries=row["max_retries"],
                next_fire_at=self._maybe_time(row["next_fire_at"]),
                last_fire_at=self._maybe_time(row["last_fire_at"]),
                created_at=self._time(row["created_at"]),
                updated_at=self._time(row["updated_at"]),
                not_after=self._maybe_time(row["not_after"]),
                success_codes=codes_of(row["success_codes"]),
                stale_codes=codes_of(row["stale_codes"]),
            )
            for row in rows
        ]

    def _maybe_time(self, value: Any) -> datetime | None:
        return None if value is None else self._time(value)

    def import_queues(self, queues: Sequence[ExportedQueue]) -> list[str]:
        if not queues:
            return []
        rows = [{"name": q.name, **q.config.as_dict(), "paused": bool(q.paused)} for q in queues]
        with self._tx() as cur:
            cur.execute(self.q["import_queues"], {"queues": json.dumps(rows)})
            created = {row["name"] for row in cur.fetchall()}
        if created:
            self.changes.publish("config")
        return [q.name for q in queues if q.name in created]

    def import_schedules(self, schedules: Sequence[ExportedSchedule]) -> list[str]:
        if not schedules:
            return []
        rows = [self._schedule_row(s) for s in schedules]
        with self._tx() as cur:
            cur.execute(self.q["import_schedules"], {"schedules": json.dumps(rows)})
            created = {row["name"] for row in cur.fetchall()}
        if created:
            self.changes.publish("config")
        return [s.name for s in schedules if s.name in created]

    def _schedule_row(self, schedule: ExportedSchedule) -> dict[str, Any]:
        auth = schedule.webhook_auth
        if auth is not None and self.cipher is not None:
            auth = self.cipher.seal(auth)

        def moment(value: datetime | None) -> Any:
            return None if value is None else self._time_param(value)

        return {
            "name": schedule.name,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "catch_up": schedule.catch_up,
            "paused": schedule.paused,
            "webhook_url": schedule.webhook_url,
            "webhook_auth": auth,
            "payload": schedule.payload_json,
            "queue": schedule.queue,
            "max_retries": schedule.max_retries,
            "next_fire_at": moment(schedule.next_fire_at),
            "last_fire_at": moment(schedule.last_fire_at),
            "created_at": moment(schedule.created_at),
            "updated_at": moment(schedule.updated_at),
            "not_after": moment(schedule.not_after),
            "success_codes": codes_text(schedule.success_codes),
            "stale_codes": codes_text(schedule.stale_codes),
        }
