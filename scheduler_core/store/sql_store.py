"""What the SQL backends share: the store verbs written once over named queries.

A backend supplies a transaction (`_tx`), its queries, and how its rows spell times and
payloads. Everything else, from idempotent enqueue to outcome recording, lives here so
both backends keep the same semantics.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from scheduler_core.encryption import AuthCipher
from scheduler_core.models import (
    DEFAULT_QUEUE,
    UNCHANGED,
    AttemptOutcome,
    AttemptRecord,
    NewTask,
    RecordedOutcome,
    RuleChange,
    Task,
    TaskFilter,
    TaskStatus,
)
from scheduler_core.runtime_config import BOUNDS, ConfigError, RuntimeConfig
from scheduler_core.status_codes import codes_of, codes_text
from scheduler_core.store import sql_transfer
from scheduler_core.store.base import (
    MAX_POSITION,
    QueueNotFound,
    StoreError,
    TaskConflict,
    TaskNotFound,
    TaskPastDeadline,
    TaskQueueGone,
)
from scheduler_core.store.changes import (
    WAKE_WINDOW_S,
    ChangeFeed,
    CombinedWatch,
    Listener,
    Watch,
)
from scheduler_core.store.claims import ClaimVerbs
from scheduler_core.store.completions import CompletionVerbs
from scheduler_core.store.group_commit import GroupCommit
from scheduler_core.store.queues import QueueVerbs
from scheduler_core.store.schedules import ScheduleVerbs
from scheduler_core.store.sql_transfer import TransferVerbs
from scheduler_core.store.stats import StatsVerbs
from scheduler_core.target_host import target_host
from scheduler_core.transfer import ExportCounts, ExportedTask, ImportResult

log = logging.getLogger(__name__)

# Stored in place of an outcome's error when the database refuses the error's text.
UNSTORABLE_ERROR = "the attempt failed; its error text could not be stored"
_LATENESS_CAP_MS = 2**53
# A rotation batch rolled back by a deadlock or a serialization failure is tried again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ROTATE_TRIES = 5
# A reschedule that finds its task leaving and re-entering `pending` looks again this often.
RESCHEDULE_TRIES = 3
BULK_BATCH = 500
BULK_TRIES = 5
ALL_STATUSES = frozenset(TaskStatus)
CANCELLABLE = frozenset({TaskStatus.PENDING, TaskStatus.STALE})  # as cancel_task takes
RETRYABLE = frozenset({TaskStatus.STALE, TaskStatus.CANCELLED})  # as retry_task takes
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")

Row = Mapping[str, Any]


class Cursor(Protocol):
    """The DB-API cursor subset the shared code uses; rows are mappings by column name."""

    def execute(self, query: str, params: Any = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def is_task_id(value: str) -> bool:
    # fullmatch: `$` alone also matches before a trailing newline, which uuid.UUID refuses
    return bool(_UUID.fullmatch(value))


def stored_task_id(value: str) -> str:
    """A task id (is_task_id) as stored: lowercase, hyphenated. Ids are found in any case,
    with or without hyphens, on every backend, as PostgreSQL's uuid column compares them;
    SQLite's text column would compare them literally."""
    return str(uuid.UUID(value))


def new_task_ids(count: int) -> list[str]:
    """`count` random UUIDs (RFC 9562 version 4), text form, from one read of the system's
    random source: uuid.uuid4() per task would cost more than storing it."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # variant RFC 4122/9562
    text = raw.hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}"
        f"-{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


class SqlStore(
    ClaimVerbs, CompletionVerbs, QueueVerbs, ScheduleVerbs, StatsVerbs, TransferVerbs, ABC
):
    dialect: str
    q: dict[str, str]
    integrity_error: type[Exception]  # what the driver raises for a broken CHECK
    statement_error: type[Exception]  # what the driver raises for a refused statement
    changes: ChangeFeed
    group_commit: GroupCommit[NewTask, list[tuple[Task, bool]]]
    # SCHEDULER_ENCRYPTION_KEY's keys: webhookAuth sealed at enqueue, opened at claim.
    cipher: AuthCipher | None = None

    @abstractmethod
    def _watch_other_processes(self, listener: Listener) -> Watch | None:
        """Start the backend's cross-process notices (LISTEN, data_version)."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]:
        """A cursor in a write transaction, committed when the block ends cleanly."""

    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads only; backends whose writes serialise can read in parallel."""
        return self._tx()

    @abstractmethod
    def _placeholder(self, name: str) -> str:
        """The driver's named parameter, e.g. %(name)s or :name."""

    @abstractmethod
    def _time(self, value: Any) -> datetime:
        """A time as the backend returns it, as an aware UTC datetime."""

    @abstractmethod
    def _payload(self, value: Any) -> Any:
        """The payload as the backend returns it, as a JSON value."""

    @abstractmethod
    def _time_param(self, moment: datetime) -> Any:
        """A time as the backend's statements take it inside a JSON parameter."""

    @abstractmethod
    def _keys_param(self, keys: list[str]) -> Any:
        """A list of idempotency keys as get_tasks_by_idempotency_keys takes it."""

    def _statuses_param(self, statuses: frozenset[TaskStatus]) -> dict[str, Any]:
        """The statuses a list or a bulk action takes, as its statement's parameters: a
        flag per status (:pending, :stale...) and the list (`statuses`)."""
        flags: dict[str, Any] = {status.value: status in statuses for status in TaskStatus}
        return {**flags, "statuses": sorted(status.value for status in statuses)}

    def _batch(self, cur: Cursor, query: str, rows: list[dict[str, Any]]) -> None:
        for params in rows:
            cur.execute(query, params)

    # -- API verbs -----------------------------------------------------------------

    def ping(self) -> None:
        with self._read() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()

    def enqueue(self, tasks: Sequence[NewTask]) -> list[tuple[Task, bool]]:
        """Store `tasks` (with whatever other enqueues are waiting: group commit) and
        return once they are committed."""
        if self.cipher is not None:  # here, on the caller's thread, not the writer's
            tasks = self.cipher.seal_tasks(tasks)
        return self.group_commit.submit(tasks)

    def _enqueue_group(self, requests: list[Sequence[NewTask]]) -> list[list[tuple[Task, bool]]]:
        """Every request's tasks in one transaction: one insert for all, one read for the
        ones an idempotency key sent back to an existing task."""
        flat = [new for request in requests for new in request]
        ids = new_task_ids(len(flat))
        rows: list[dict[str, Any]] = [
            self._insert_row(task_id, new, new.webhook_auth)
            for task_id, new in zip(ids, flat, strict=True)
        ]
        with self._tx() as cur:
            # The named queues held until the commit: a removal cannot slip in between.
            self._lock_queues(cur, {new.queue for new in flat})
            cur.execute(self.q["insert_tasks"], {"tasks": json.dumps(rows)})
            by_id = dict(zip(ids, flat, strict=True))
            created = {
                row["id"]: self._new_task_row(by_id[row["id"]], row) for row in cur.fetchall()
            }
            keys = [r["idempotency_key"] for r in rows if r["id"] not in created]
            existing: dict[str, Task] = {}
            if keys:
                cur.execute(self.q["get_tasks_by_idempotency_keys"], self._keys_param(keys))
                existing = {row["idempotency_key"]: self._task(row) for row in cur.fetchall()}
        results: list[list[tuple[Task, bool]]] = []
        rest = iter(zip(ids, rows, strict=True))
        for request in requests:
            mine: list[tuple[Task, bool]] = []
            for task_id, row in (next(rest) for _ in request):
                if task_id in created:
                    mine.append((created[task_id], True))
                else:  # its key was taken: the task that holds it, unchanged
                    mine.append((existing[row["idempotency_key"]], False))
            results.append(mine)
        if any(_due_soon(task) for task in created.values()):
            self.changes.publish("due")
        return results

    def get(self, task_id: str) -> Task | None:
        if not is_task_id(task_id):
            return None
        task_id = stored_task_id(task_id)
        with self._read() as cur:
            cur.execute(self.q["get_task"], {"id": task_id})
            row = cur.fetchone()
        return self._task(row) if row else None

    def list_tasks(
        self, filter: TaskFilter, limit: int, before: int | None
    ) -> tuple[list[Task], int | None]:
        if not _may_match(filter):
            return [], None
        params: dict[str, Any] = {
            **self._filter_params(filter),
            # No cursor: before every position, so the query is one index range either way.
            "before": before if before is not None else MAX_POSITION,
            "limit": limit + 1,
        }
        query = "list_tasks"
        if filter.statuses is not None and filter.statuses != ALL_STATUSES:
            query = "list_tasks_by_status"
            params.update(self._statuses_param(filter.statuses))
        with self._read() as cur:
            cur.execute(self.q[query], params)
            rows = cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [self._task(r) for r in rows], (rows[-1]["seq"] if more and rows else None)

    def retrying_tasks(self, limit: int) -> list[Task]:
        with self._read() as cur:
            cur.execute(self.q["retrying_tasks"], {"limit": limit})
            rows = cur.fetchall()
        return [self._task(r) for r in rows]

    def attempts(self, task_id: str) -> list[AttemptRecord] | None:
        if not is_task_id(task_id):
            return None
        task_id = stored_task_id(task_id)
        with self._read() as cur:
            cur.execute(self.q["task_exists"], {"id": task_id})
            if cur.fetchone() is None:
                return None
            cur.execute(self.q["list_attempts"], {"id": task_id})
            rows = cur.fetchall()
        return [
            AttemptRecord(
                attempt=r["attempt"],
                started_at=self._time(r["started_at"]),
                finished_at=self._time(r["finished_at"]) if r["finished_at"] else None,
                duration_ms=r["duration_ms"],
                status_code=r["status_code"],
                error=r["error"],
                outcome=AttemptOutcome(r["outcome"]) if r["outcome"] else None,
                lateness_ms=r["lateness_ms"],
            )
            for r in rows
        ]

    def cancel(self, task_id: str) -> Task:
        return self._transition(task_id, "cancel_task", TaskStatus.CANCELLED)

    def retry(self, task_id: str) -> Task:
        try:
            task = self._transition(task_id, "retry_task", None)
        except TaskConflict as exc:
            task = exc.task
            if (
                task.status in RETRYABLE
                and task.not_after is not None
                and task.queue in self.existing_queues({task.queue})
            ):  # its queue is there: its deadline held it back
                raise TaskPastDeadline(task, "deadline passed") from None
            if exc.task.status in RETRYABLE:  # retryable, yet not retried: its queue is gone
                raise TaskQueueGone(
                    exc.task, f"its queue {exc.task.queue!r} no longer exists"
                ) from None
            raise
        self.changes.publish("due")
        return task

    def reschedule(
        self, task_id: str, execute_at: datetime | None, rules: RuleChange | None = None
    ) -> Task:
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        rules = rules or RuleChange()
        params = {
            "id": stored_task_id(task_id),
            "execute_at": self._time_param(execute_at) if execute_at is not None else None,
            "set_not_after": rules.not_after is not UNCHANGED,
            "not_after": (
                self._time_param(rules.not_after) if isinstance(rules.not_after, datetime) else None
            ),
            "set_success_codes": rules.success_codes is not UNCHANGED,
            "success_codes": codes_text(_changed(rules.success_codes)),
            "set_stale_codes": rules.stale_codes is not UNCHANGED,
            "stale_codes": codes_text(_changed(rules.stale_codes)),
        }
        for _ in range(RESCHEDULE_TRIES):
            with self._tx() as cur:
                cur.execute(self.q["reschedule_task"], params)
                row = cur.fetchone()
                if row is None:
                    cur.execute(self.q["get_task"], {"id": params["id"]})
                    row = cur.fetchone()
                    if row is None:
                        raise TaskNotFound(task_id)
                    task = self._task(row)
                    if task.status is not TaskStatus.PENDING:
                        raise TaskConflict(task, f"the task is {task.status.value}")
                    # Not pending when the update looked, pending again now (a failed
                    # attempt just ended): look again rather than refuse a pending task.
                    continue
            task = self._task(row)
            if _due_soon(task):
                self.changes.publish("due")
            return task
        raise TaskConflict(task, "the task keeps changing state")

    def bulk_cancel(self, filter: TaskFilter, batch_size: int = BULK_BATCH) -> int:
        return self._bulk("bulk_cancel", filter, CANCELLABLE, batch_size)

    def bulk_retry(self, filter: TaskFilter, batch_size: int = BULK_BATCH) -> int:
        return self._bulk("bulk_retry", filter, RETRYABLE, batch_size, wakes=True)

    def _bulk(
        self,
        query: str,
        filter: TaskFilter,
        takes: frozenset[TaskStatus],
        batch_size: int,
        wakes: bool = False,
    ) -> int:
        """Apply `query` to every task matching `filter` whose status is in `takes`, a
        transaction per batch of `batch_size` in seq order, so no lock is held for long
        and dispatchers and enqueues go on between batches. Tasks enqueued after the call
        began are left alone. Returns how many tasks changed."""
        statuses = takes if filter.statuses is None else takes & filter.statuses
        if not statuses or not _may_match(filter):
            return 0
        with self._read() as cur:
            cur.execute(self.q["max_seq"])
            ceiling = cur.fetchone()["ceiling"]
        params: dict[str, Any] = {
            **self._filter_params(filter),
            **self._statuses_param(statuses),
            "ceiling": ceiling,
            "batch": batch_size,
            "after": 0,
        }
        total = 0
        while True:
            rows = self._write_retrying(query, params)
            changed = sum(1 for r in rows if r["changed"])
            total += changed
            if changed and wakes:
                self.changes.publish("due")
            if len(rows) < batch_size:  # every candidate up to the ceiling was seen
                return total
            params["after"] = max(r["seq"] for r in rows)

    def _write_retrying(self, query: str, params: dict[str, Any]) -> list[Row]:
        """Run one write statement in its own transaction; one PostgreSQL rolled back as a
        deadlock's victim (rows locked in another order by a concurrent statement) or for
        a serialization failure is run again."""
        for attempt in range(1, BULK_TRIES + 1):
            try:
                with self._tx() as cur:
                    cur.execute(self.q[query], params)
                    return list(cur.fetchall())
            except self.statement_error as exc:
                code = getattr(exc, "pgcode", None)
                if code not in RETRYABLE_SQLSTATES or attempt == BULK_TRIES:
                    raise
                log.warning("%s rolled back (SQLSTATE %s); trying the batch again", query, code)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _filter_params(self, filter: TaskFilter) -> dict[str, Any]:
        """The creation range of `filter` as the task_filter fragment takes it."""
        return {
            "created_before": (
                self._time_param(filter.created_before) if filter.created_before else None
            ),
            "created_after": (
                self._time_param(filter.created_after) if filter.created_after else None
            ),
            "queue": filter.queue,
        }

    def _transition(self, task_id: str, query: str, unchanged_if: TaskStatus | None) -> Task:
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        task_id = stored_task_id(task_id)
        with self._tx() as cur:
            cur.execute(self.q[query], {"id": task_id})
            row = cur.fetchone()
            if row is None:
                cur.execute(self.q["get_task"], {"id": task_id})
                row = cur.fetchone()
                if row is None:
                    raise TaskNotFound(task_id)
                task = self._task(row)
                if task.status != unchanged_if:
                    raise TaskConflict(task, f"the task is {task.status.value}")
        return self._task(row)

    def existing_queues(self, names: Collection[str]) -> set[str]:
        with self._read() as cur:
            cur.execute(self.q["existing_queues"], {"names": self._ids_param(sorted(names))})
            return {row["queue"] for row in cur.fetchall()}

    def get_config(self, queue: str = DEFAULT_QUEUE) -> RuntimeConfig:
        with self._read() as cur:
            cur.execute(self.q["get_config"], {"queue": queue})
            row = cur.fetchone()
        if row is None:
            raise QueueNotFound(queue)
        return RuntimeConfig(**dict(row))

    def update_config(self, columns: dict[str, int], queue: str = DEFAULT_QUEUE) -> RuntimeConfig:
        if columns:
            # Every key is a parameter; the ones not changing are NULL and keep their value.
            params: dict[str, Any] = {name: columns.get(name) for name in BOUNDS}
            params["queue"] = queue
            try:
                with self._tx() as cur:
                    cur.execute(self.q["update_config"], params)
            except self.integrity_error as exc:  # a concurrent change broke a CHECK
                raise ConfigError({"_schema": [str(exc).strip().splitlines()[0]]}) from None
            self.changes.publish("config")
        return self.get_config(queue)

    # -- dispatcher verbs ----------------------------------------------------------

    def watch(self, listener: Listener) -> Watch:
        unsubscribe = self.changes.subscribe(listener)
        return CombinedWatch(unsubscribe, self._watch_other_processes(listener))

    def record_outcomes(self, outcomes: Sequence[RecordedOutcome]) -> None:
        if not outcomes:
            return
        rows = [_outcome_row(item) for item in outcomes]
        try:
            with self._tx() as cur:
                self._write_outcomes(cur, rows)
        except self.statement_error as exc:
            # One row's data spoilt the batch: write them one by one, so the rest are kept.
            log.warning("recording %d outcomes together failed (%s); one by one", len(rows), exc)
            for row in rows:
                self._record_alone(row)
        if any(r["status"] == "pending" and r["retry_in_ms"] <= WAKE_WINDOW_S * 1000 for r in rows):
            self.changes.publish("due")

    def _record_alone(self, row: dict[str, Any]) -> None:
        # Failing as it is, the row is stored with only what cannot be refused, so its
        # task still moves on rather than wait out its lease.
        plain = {**row, "error": UNSTORABLE_ERROR, "lateness_ms": None, "status_code": None}
        for attempt in (row, plain):
            try:
                with self._tx() as cur:
                    self._write_outcomes(cur, [attempt])
                return
            except self.statement_error as exc:
                log.error("task=%s outcome refused by the database: %s", row["id"], exc)

    @abstractmethod
    def _write_outcomes(self, cur: Cursor, rows: list[dict[str, Any]]) -> None:
        """Write `rows` (see _outcome_row) in as few statements as the backend allows."""

    # -- key rotation ---------------------------------------------------------------------

    def webhook_auth_page(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        with self._read() as cur:
            cur.execute(self.q["webhook_auth_page"], {"after": after, "limit": limit})
            rows = cur.fetchall()
        return [(r["seq"], r["id"], r["webhook_auth"]) for r in rows]

    def replace_webhook_auth(self, changes: Sequence[tuple[str, str, str]]) -> list[str]:
        rows = [{"id": task_id, "old": old, "new": new} for task_id, old, new in changes]
        for attempt in range(1, ROTATE_TRIES + 1):
            try:
                with self._tx() as cur:
                    cur.execute(self.q["replace_webhook_auth"], {"rows": json.dumps(rows)})
                    return [r["id"] for r in cur.fetchall()]
            except self.statement_error as exc:
                # The batch waits for rows a dispatcher is recording, in whatever order:
                # PostgreSQL may pick it as a deadlock's victim. It is only rolled back.
                retryable = getattr(exc, "pgcode", None) in RETRYABLE_SQLSTATES
                if not retryable or attempt == ROTATE_TRIES:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise StoreError(f"re-encrypting a batch failed: {first}") from exc
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    # -- moving between databases (scheduler export / import): sql_transfer.py -----------

    def _snapshot(self) -> AbstractContextManager[Cursor]:
        """A read transaction whose statements all see one snapshot of the database."""
        return self._read()

    def _status_list_param(self, statuses: Sequence[str]) -> Any:
        return list(statuses)

    def _ids_param(self, ids: Sequence[str]) -> Any:
        return list(ids)

    def export_counts(self) -> ExportCounts:
        return sql_transfer.export_counts(self)

    def export_tasks(
        self, statuses: frozenset[TaskStatus], batch_size: int = 500
    ) -> Iterator[ExportedTask]:
        return sql_transfer.export_tasks(self, statuses, batch_size)

    def import_tasks(self, tasks: Sequence[ExportedTask]) -> ImportResult:
        return sql_transfer.import_tasks(self, tasks)

    def purge_expired(self, retention_hours: int, batch_size: int) -> int:
        with self._tx() as cur:
            cur.execute(
                self.q["purge_expired"],
                {"retention_hours": retention_hours, "batch_size": batch_size},
            )
            return int(cur.rowcount)  # type: ignore[attr-defined]

    # -- rows ----------------------------------------------------------------------

    def _insert_row(self, task_id: str, new: NewTask, webhook_auth: str | None) -> dict[str, Any]:
        """`new` as insert_tasks reads it (one object of its JSON array), with
        `webhook_auth` as it is to be stored (sealed or not)."""
        return {
            "id": task_id,
            "webhook_url": new.webhook_url,
            "webhook_auth": webhook_auth,
            "payload": json.dumps(new.payload, ensure_ascii=False),
            "execute_at": self._time_param(new.execute_at) if new.execute_at else None,
            "idempotency_key": new.idempotency_key,
            "max_retries": new.max_retries,
            "queue": new.queue,
            "schedule": new.schedule,
            "not_after": self._time_param(new.not_after) if new.not_after else None,
            "success_codes": codes_text(new.success_codes),
            "stale_codes": codes_text(new.stale_codes),
            "traceparent": new.traceparent,
            "target_host": target_host(new.webhook_url),
        }

    def _new_task_row(self, new: NewTask, row: Row) -> Task:
        """A task just inserted: what the database chose (id, due time, creation time)
        from `row`, the rest as enqueued (a new task's columns all start the same)."""
        created_at = self._time(row["created_at"])
        execute_at = self._time(row["execute_at"])
        return Task(
            id=row["id"],
            webhook_url=new.webhook_url,
            execute_at=execute_at,
            status=TaskStatus.PENDING,
            attempts=0,
            max_retries=new.max_retries,
            next_attempt_at=execute_at,
            payload=new.payload,
            idempotency_key=new.idempotency_key,
            last_error=None,
            last_status_code=None,
            created_at=created_at,
            updated_at=created_at,
            resolved_at=None,
            queue=new.queue,
            schedule=new.schedule,
            not_after=new.not_after,
            success_codes=new.success_codes,
            stale_codes=new.stale_codes,
            traceparent=new.traceparent,
        )

    def _task(self, row: Row) -> Task:
        return Task(
            id=row["id"],
            webhook_url=row["webhook_url"],
            execute_at=self._time(row["execute_at"]),
            status=TaskStatus(row["status"]),
            attempts=row["attempts"],
            max_retries=row["max_retries"],
            next_attempt_at=self._time(row["next_attempt_at"]),
            payload=self._payload(row["payload"]),
            idempotency_key=row["idempotency_key"],
            last_error=row["last_error"],
            last_status_code=row["last_status_code"],
            created_at=self._time(row["created_at"]),
            updated_at=self._time(row["updated_at"]),
            resolved_at=self._time(row["resolved_at"]) if row["resolved_at"] else None,
            queue=row["queue"],
            schedule=row["schedule"],
            not_after=self._time(row["not_after"]) if row["not_after"] is not None else None,
            success_codes=codes_of(row["success_codes"]),
            stale_codes=codes_of(row["stale_codes"]),
            traceparent=row["traceparent"],
        )


def _changed(value: Any) -> Any:
    """A RuleChange field's new value; None for UNCHANGED (its set_* flag is false)."""
    return None if value is UNCHANGED else value


def _due_soon(task: Task) -> bool:
    """Whether a task just written (enqueued, rescheduled) is due within the wake-up
    window of that write: its updated_at is the database clock of the write."""
    return (task.next_attempt_at - task.updated_at).total_seconds() <= WAKE_WINDOW_S


def _may_match(filter: TaskFilter) -> bool:
    """False when `filter` can match no task whatever the data: an empty set of statuses."""
    return filter.statuses != frozenset()


def _outcome_row(item: RecordedOutcome) -> dict[str, Any]:
    """One outcome as the record statements read it (a JSON object per row)."""
    outcome, decision = item.outcome, item.decision
    if item.awaiting:  # a 202 with Scheduler-Async: still running, the attempt open
        status = TaskStatus.RUNNING
    elif decision is None:
        status = TaskStatus.RESOLVED
    else:
        status = TaskStatus.STALE if decision.is_stale else TaskStatus.PENDING
    lateness = item.lateness_ms
    return {
        "id": item.task_id,
        "attempt": item.attempt,
        "status": status.value,
        "retry_in_ms": (decision.retry_in_ms or 0) if decision is not None else 0,
        "error": outcome.error,
        "status_code": outcome.status_code,
        # A lost attempt's duration is unknown: its dispatcher never reported.
        "duration_ms": None
        if item.lost or item.awaiting
        else max(0, min(outcome.duration_ms, 2**31 - 1)),
        "lateness_ms": min(lateness, _LATENESS_CAP_MS) if lateness is not None else None,
        "outcome": None if item.awaiting else item.kind.value,
        "async_timeout_s": outcome.async_timeout_s if item.awaiting else None,
    }
