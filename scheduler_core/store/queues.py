"""The queue verbs: each queue is a row of the configuration table, a column per key.

Mixed into SqlStore; the SQL is in `sql/<dialect>.queues.sql`. A write that changes what
dispatchers do (a new or replaced config, pause, resume, removal) wakes them in this
process (`changes.publish("config")`) and, on PostgreSQL, in every other (the statement's
`pg_notify`, as update_config's).

Removing a queue must never leave a pending task in a queue that no longer exists. The
removal checks the queue's tasks and deletes its row in one transaction holding the
row's lock (PostgreSQL `FOR UPDATE`; SQLite's write transaction); every enqueue takes the
rows of its named queues (`_lock_queues`: PostgreSQL `FOR KEY SHARE`, in the enqueue's
own transaction) before it inserts. Whichever comes second sees the first's commit: the
removal finds the new tasks and refuses, or the enqueue finds no queue and stores nothing.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduler_core.models import DEFAULT_QUEUE, QueueInfo, TaskFilter, TaskStatus
from scheduler_core.runtime_config import BOUNDS, ConfigError, RuntimeConfig
from scheduler_core.store.base import QueueConflict, QueueNotFound
from scheduler_core.store.changes import ChangeFeed
from scheduler_core.store.stats import NOTHING_DUE, read_due, read_task_counts

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor, Row

# The statuses that keep a queue from being removed: work that is or may be delivered.
BUSY = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.STALE)


class QueueVerbs:
    """Mixed into SqlStore: the queue verbs written once over each backend's queries."""

    q: dict[str, str]
    changes: ChangeFeed
    integrity_error: type[Exception]

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _ids_param(self, ids: list[str]) -> Any: ...

    @abstractmethod
    def bulk_cancel(self, filter: TaskFilter, batch_size: int = ...) -> int: ...

    # -- reads ----------------------------------------------------------------------------

    def list_queues(self) -> list[QueueInfo]:
        with self._read() as cur:
            cur.execute(self.q["queue_rows"])
            rows = cur.fetchall()
            counts = read_task_counts(self.q, cur, None)
            due = read_due(self.q, cur, None)
        return sorted((self._queue(row, counts, due) for row in rows), key=lambda info: info.name)

    def get_queue(self, name: str) -> QueueInfo:
        with self._read() as cur:
            return self._read_queue(cur, name, "queue_row")

    def _read_queue(self, cur: Cursor, name: str, query: str) -> QueueInfo:
        cur.execute(self.q[query], {"queue": name})
        row = cur.fetchone()
        if row is None:
            raise QueueNotFound(name)
        return self._queue(row, read_task_counts(self.q, cur, name), read_due(self.q, cur, name))

    def _queue(
        self,
        row: Row,
        counts: Mapping[str, dict[TaskStatus, int]],
        due: Mapping[str, tuple[int, float]],
    ) -> QueueInfo:
        name = row["queue"]
        return QueueInfo(
            name=name,
            config=RuntimeConfig(**{column: row[column] for column in BOUNDS}),
            paused=bool(row["paused"]),
            counts=counts.get(name) or dict.fromkeys(TaskStatus, 0),
            due_backlog=due.get(name, NOTHING_DUE)[0],
            created_at=self._time(row["created_at"]),
            updated_at=self._time(row["updated_at"]),
        )

    # -- writes ---------------------------------------------------------------------------

    def put_queue(self, name: str, columns: dict[str, int]) -> tuple[QueueInfo, bool]:
        params: dict[str, Any] = {**RuntimeConfig(**columns).as_dict(), "queue": name}
        try:
            with self._tx() as cur:
                cur.execute(self.q["lock_queue"], {"queue": name})
                params["created"] = cur.fetchone() is None  # (SQLite's answer; see the SQL)
                cur.execute(self.q["put_queue"], params)
                created = bool(cur.fetchone()["created"])
        except self.integrity_error as exc:  # a CHECK the caller's validation let through
            raise ConfigError({"_schema": [str(exc).strip().splitlines()[0]]}) from None
        self.changes.publish("config")
        return self.get_queue(name), created

    def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        with self._tx() as cur:
            cur.execute(self.q["set_queue_paused"], {"queue": name, "paused": paused})
            if cur.fetchone() is None:
                raise QueueNotFound(name)
        self.changes.publish("config")
        return self.get_queue(name)

    def delete_queue(self, name: str) -> QueueInfo:
        if name == DEFAULT_QUEUE:
            raise QueueConflict("The default queue cannot be removed.", {"reason": "default_queue"})
        with self._tx() as cur:
            info = self._read_queue(cur, name, "lock_queue")  # held until the commit
            busy = {status.value: info.counts.get(status, 0) for status in BUSY}
            if any(busy.values()):
                held = ", ".join(f"{n} {s}" for s, n in busy.items() if n)
                raise QueueConflict(
                    f"The queue holds tasks ({held}); cancel or purge them first.",
                    {"reason": "tasks", "counts": busy},
                )
            cur.execute(self.q["schedules_into_queue"], {"queue": name})
            schedules = [row["name"] for row in cur.fetchall()]
            if schedules:
                raise QueueConflict(
                    f"{len(schedules)} schedule{'s' if len(schedules) != 1 else ''} "
                    "enqueue into the queue; remove them or point them elsewhere first.",
                    {"reason": "schedules", "schedules": schedules},
                )
            cur.execute(self.q["delete_queue"], {"queue": name})
            cur.fetchall()
        self.changes.publish("config")
        return info

    def purge_queue(self, name: str) -> int:
        with self._read() as cur:
            cur.execute(self.q["queue_row"], {"queue": name})
            if cur.fetchone() is None:
                raise QueueNotFound(name)
        return self.bulk_cancel(TaskFilter(queue=name))

    # -- for the enqueue --------------------------------------------------------------------

    def _lock_queues(self, cur: Cursor, names: Collection[str]) -> None:
        """Inside an enqueue's transaction, before its insert: hold the rows of the named
        queues until the commit (see the module's docstring); QueueNotFound naming the
        first one that does not exist. `default` always does and is never taken."""
        named = sorted(set(names) - {DEFAULT_QUEUE})
        if not named:
            return
        cur.execute(self.q["lock_queues_for_enqueue"], {"names": self._ids_param(named)})
        found = {row["queue"] for row in cur.fetchall()}
        for name in named:
            if name not in found:
                raise QueueNotFound(name)
