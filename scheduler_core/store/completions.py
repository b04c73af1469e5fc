"""The store's verbs for asynchronous completion: the keys every server shares, and the
settling of an attempt that answered 202 with Scheduler-Async through its completion URL.
Mixed into SqlStore; the SQL is in `sql/<dialect>.completions.sql`.
"""

from __future__ import annotations

import enum
import secrets
import time
from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduler_core.encryption import AuthCipher, reveal
from scheduler_core.models import ClaimedTask, RecordedOutcome, TaskStatus

if TYPE_CHECKING:
    from scheduler_core.store.changes import ChangeFeed
    from scheduler_core.store.sql_store import Cursor

# Bytes of randomness in a key made by shared_key (hex text twice as long).
SHARED_KEY_BYTES = 32


class Settled(enum.Enum):
    """What a call to a completion URL came to."""

    SETTLED = "settled"  # the attempt took the outcome
    NOT_FOUND = "not_found"  # no such task (deleted, or never existed)
    CONFLICT = "conflict"  # not the task's current, open attempt (409)
    GONE = "gone"  # the attempt's Scheduler-Async timeout has passed (410)


@dataclass(frozen=True)
class AwaitedAttempt:
    """The attempt a completion URL names, as the settle callback sees it: the task as
    the retry policy takes it (`task`), and milliseconds since the attempt started."""

    task: ClaimedTask
    elapsed_ms: int


Settle = Callable[[AwaitedAttempt], RecordedOutcome]


class CompletionVerbs:
    q: dict[str, str]
    changes: ChangeFeed
    cipher: AuthCipher | None

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _write_outcomes(self, cur: Cursor, rows: list[dict[str, Any]]) -> None: ...

    def shared_key(self, name: str) -> str:
        """The key `name` of scheduler_keys (hex text), made from `secrets` by the first
        process that asks; every process on the database then reads the same one."""
        with self._tx() as cur:
            cur.execute(
                self.q["insert_shared_key"],
                {"name": name, "value": secrets.token_hex(SHARED_KEY_BYTES)},
            )
            cur.execute(self.q["shared_key"], {"name": name})
            row = cur.fetchone()
        return str(row["value"])

    def settle_attempt(
        self, task_id: str, attempt: int, settle: Settle
    ) -> tuple[Settled, RecordedOutcome | None]:
        """Give attempt `attempt` of `task_id` the outcome `settle` makes, if it is the
        task's current attempt, still running and not past its Scheduler-Async timeout.
        Atomic: of two calls for one attempt (complete and fail, or the same twice), one
        settles it and the other gets CONFLICT."""
        from scheduler_core.store.sql_store import _outcome_row, is_task_id, stored_task_id

        if not is_task_id(task_id):
            return Settled.NOT_FOUND, None
        with self._tx() as cur:
            cur.execute(
                self.q["awaited_attempt"], {"id": stored_task_id(task_id), "attempt": attempt}
            )
            row = cur.fetchone()
            if row is None:
                return Settled.NOT_FOUND, None
            if row["expired"]:
                return Settled.GONE, None
            current = row["attempts"] == attempt and row["status"] == TaskStatus.RUNNING.value
            if not current or row["finished_at"] is not None:
                return Settled.CONFLICT, None
            recorded = settle(
                AwaitedAttempt(
                    ClaimedTask(
                        id=row["id"],
                        webhook_url=row["webhook_url"],
                        # Opened so the fail body's error is redacted of it.
                        webhook_auth=reveal(row["webhook_auth"], self.cipher)[0],
                        execute_at=self._time(row["execute_at"]),
                        payload_json="null",
                        attempt=attempt,
                        attempts_in_budget=row["attempts_in_budget"],
                        max_retries=row["max_retries"],
                        queue=row["queue"],
                        not_after=None
                        if row["not_after"] is None
                        else self._time(row["not_after"]),
                        # The database clock now: what decision.db_now reads.
                        next_attempt_at=self._time(row["db_now"]),
                        claimed_monotonic=time.monotonic(),
                    ),
                    int(row["elapsed_ms"] or 0),
                )
            )
            self._write_outcomes(cur, [_outcome_row(recorded)])
        if recorded.decision is not None and not recorded.decision.is_stale:
            self.changes.publish("due")  # this process's dispatchers: a retry is coming
        return Settled.SETTLED, recorded
