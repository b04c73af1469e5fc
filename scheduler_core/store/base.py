"""The store: the handful of verbs the API and the dispatcher need from a database.

A backend implements `Store` with its SQL in `.sql` files; the same contract tests run
against every backend. Time is always the database's clock, never the caller's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from scheduler_core.migrations import Migration
from scheduler_core.models import (
    ActivityBucket,
    AttemptRecord,
    ClaimedTask,
    DispatchState,
    LostAttempt,
    NewTask,
    QueueClaim,
    QueueCounts,
    QueueInfo,
    RecordedOutcome,
    RuleChange,
    Task,
    TaskFilter,
    TaskStatus,
)
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.schedules.model import NewSchedule, Schedule
from scheduler_core.store.changes import Listener, Watch
from scheduler_core.store.completions import Settle, Settled
from scheduler_core.store.host_limits import HostInfo
from scheduler_core.transfer import (
    ExportCounts,
    ExportedQueue,
    ExportedSchedule,
    ExportedTask,
    ImportResult,
)


class StoreError(Exception):
    """Base class of the errors a store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or lost the connection; try again later."""


class TaskNotFound(StoreError):
    pass


class QueueNotFound(StoreError):
    """No queue of that name exists; `args[0]` is the name."""


class QueueConflict(StoreError):
    """The queue's state does not allow the operation (removing one that holds tasks,
    removing `default`, creating one that exists). `details` says why, for the API's
    error details (never a secret: counts, names)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.details: dict[str, Any] = details or {}


class ScheduleNotFound(StoreError):
    """No schedule of that name exists; `args[0]` is the name."""


class ScheduleConflict(StoreError):
    """A schedule of that name exists already; `args[0]` is the name."""


class TaskConflict(StoreError):
    """The task's state does not allow the operation."""

    def __init__(self, task: Task, message: str):
        super().__init__(message)
        self.task = task


class TaskQueueGone(TaskConflict):
    """A stale or cancelled task whose queue was removed: it cannot be retried into it."""


class TaskPastDeadline(TaskConflict):
    """A stale or cancelled task whose notAfter has passed: a retry could never call it."""


class Store(Protocol):
    dialect: str

    def migrate(self, migrations: Sequence[Migration] | None = None) -> list[str]:
        """Apply pending migrations, one process at a time; return the names applied.

        `migrations`: those to know (default: every one of the dialect); a test gives a
        prefix of them to make a database of an older version. StoreError, nothing
        changed, when the database recorded a version they do not hold (a newer release
        migrated it)."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def close(self) -> None: ...

    # -- API verbs -----------------------------------------------------------------

    def enqueue(self, tasks: Sequence[NewTask]) -> list[tuple[Task, bool]]:
        """Store all tasks in one transaction; return each with True when created.

        A task whose idempotency key already exists is not created: the existing one
        is returned with False.
        """

    def get(self, task_id: str) -> Task | None: ...

    def list_tasks(
        self, filter: TaskFilter, limit: int, before: int | None
    ) -> tuple[list[Task], int | None]:
        """Up to `limit` tasks matching `filter`, newest first (by creation order).

        `before` is a keyset position from a previous call (None: from the newest); the
        second value is the position to pass for the next page, None on the last page.
        Pages stay stable while tasks are added or change state: a position is a task's
        place in creation order, not an offset.
        """

    def attempts(self, task_id: str) -> list[AttemptRecord] | None:
        """Every attempt of the task in order, or None when the task does not exist."""

    def retrying_tasks(self, limit: int) -> list[Task]:
        """Up to `limit` pending tasks whose last attempt failed (they wait for a retry),
        the soonest retry first: what the dashboard lists as failing."""

    def cancel(self, task_id: str) -> Task:
        """pending/stale -> cancelled; cancelled unchanged; else TaskConflict."""

    def retry(self, task_id: str) -> Task:
        """stale/cancelled -> pending, due now, with a fresh budget; else TaskConflict."""

    def reschedule(
        self, task_id: str, execute_at: datetime | None, rules: RuleChange | None = None
    ) -> Task:
        """A pending task's executeAt and nextAttemptAt become `execute_at` (a past time
        is due at once; None keeps them), and its delivery rules take what `rules`
        changes, in one conditional write, waking dispatchers when it is due soon.
        TaskConflict when the task is in any other state (a claim that wins the race
        included: nothing is changed then); TaskNotFound."""

    def bulk_cancel(self, filter: TaskFilter, batch_size: int = 500) -> int:
        """Cancel every pending or stale task matching `filter`, as `cancel` would, in
        transactions of `batch_size` tasks; return how many were cancelled. Running and
        resolved tasks are left alone; cancelled ones are not counted again. Tasks
        enqueued after the call began are left alone."""

    def bulk_retry(self, filter: TaskFilter, batch_size: int = 500) -> int:
        """Retry every stale or cancelled task matching `filter`, as `retry` would (due
        now, a fresh budget, dispatchers woken), in transactions of `batch_size` tasks;
        return how many were retried."""

    def existing_queues(self, names: Collection[str]) -> set[str]:
        """Which of `names` are queues that exist."""

    def get_config(self, queue: str = ...) -> RuntimeConfig:
        """The config row of `queue` (default: `default`); QueueNotFound."""

    def update_config(self, columns: dict[str, int], queue: str = ...) -> RuntimeConfig:
        """Change some columns of `queue`'s row (validated by the caller; a concurrent
        change breaking a CHECK raises ConfigError) and wake every dispatcher; return the
        row. QueueNotFound."""

    # -- queues (store/queues.py) ----------------------------------------------------

    def list_queues(self) -> list[QueueInfo]:
        """Every queue, sorted by name, with its config, counts and due backlog."""

    def get_queue(self, name: str) -> QueueInfo:
        """One queue; QueueNotFound."""

    def put_queue(self, name: str, columns: dict[str, int]) -> tuple[QueueInfo, bool]:
        """Create the queue `name` with `columns` (validated by the caller; a column left
        out takes its default), or replace an existing queue's whole config so (its pause
        switch is kept); True when it was created. Wakes every dispatcher."""

    def delete_queue(self, name: str) -> QueueInfo:
        """Remove a queue, checked and removed in one transaction under the row's lock,
        and return it as it was. QueueConflict for `default`, for a queue holding pending,
        running or stale tasks (details: the counts) and for one a schedule enqueues into
        (details: the schedules); QueueNotFound. Its resolved and cancelled tasks stay
        until retention deletes them. An enqueue into the queue racing the removal either
        commits first (then the removal is refused) or fails with QueueNotFound."""

    def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        """Pause or resume a queue (a paused queue's tasks are not claimed; enqueueing
        still works); idempotent. Wakes every dispatcher. QueueNotFound."""

    def purge_queue(self, name: str) -> int:
        """Cancel every pending and stale task of the queue, as bulk_cancel with
        TaskFilter(queue=name) would; return how many. QueueNotFound."""

    # -- dispatcher verbs ----------------------------------------------------------

    def watch(self, listener: Listener) -> Watch:
        """Call `listener(kind)` whenever a task may have fallen due or the config changed,
        in this process or another; close the returned watch to stop."""

    def dispatch_state(self) -> DispatchState:
        """Every queue's config, paused state and earliest pending task, with the
        database clock, in one read."""

    def claim_due(self, limit: int, lease_ms: int, queue: str = ...) -> list[ClaimedTask]:
        """Lease up to `limit` due tasks of `queue` (default: `default`) in claim order,
        none while it is paused, ignoring its limits across dispatchers; each claim counts
        an attempt."""

    def claim_queue(
        self, queue: str, limit: int, lease_ms: int, *, limited: bool = True
    ) -> QueueClaim:
        """As claim_due, and with `limited` within the queue's max_dispatches_per_second
        (a token bucket in its config row) and max_concurrent_dispatches across every
        dispatcher; says when the next task may start when a limit held some back."""

    def claim_expired_leases(self, limit: int, lease_ms: int) -> list[LostAttempt]:
        """Take up to `limit` running tasks whose lease expired, under a new lease of
        `lease_ms`, for the caller to record as lost attempts."""

    def record_outcomes(self, outcomes: Sequence[RecordedOutcome]) -> None:
        """Store outcomes of claimed attempts, together; an outcome for a lost claim is
        ignored. A row the database refuses does not stop the others being stored."""

    def shared_key(self, name: str) -> str:
        """A key every process on the database shares (scheduler_keys), made at the
        first call: e.g. the HMAC key of the async completion URLs."""

    def settle_attempt(
        self, task_id: str, attempt: int, settle: Settle
    ) -> tuple[Settled, RecordedOutcome | None]:
        """Settle an attempt waiting on its completion URL (store/completions.py)."""

    def purge_expired(self, retention_hours: int, batch_size: int) -> int:
        """Delete up to `batch_size` resolved/cancelled tasks past retention."""

    # -- per-host backpressure (store/hosts.py) -------------------------------------------

    def known_hosts(self) -> frozenset[str]:
        """The throttled hosts (rows of scheduler_hosts) as of this store's last
        dispatch_state: only their successes are worth recording."""

    def hold_host_locally(self, host: str, seconds: float) -> None:
        """Leave `host`'s tasks alone in this process's claims for `seconds`, or until
        record_host_feedback stores its throttling."""

    def record_host_feedback(
        self, throttles: Mapping[str, tuple[int, int]], successes: Collection[str]
    ) -> None:
        """Store answers per host: `throttles` maps a host to (block ms, 429/503
        answers): blocked that long, limits halved; `successes` are hosts that resolved
        tasks: limits raised one step, the row deleted once no use (host_limits.py)."""

    def list_hosts(self) -> list[HostInfo]:
        """Every throttled host, most throttled first."""

    def forget_idle_hosts(self, idle_s: float = 60.0) -> int:
        """Forget the throttled hosts neither blocked nor heard from for `idle_s` seconds
        (back to unlimited); how many were forgotten."""

    # -- operators' reads (/metrics, GET /api/v1/stats, the dashboard) --------------------

    def queue_counts(self) -> list[QueueCounts]:
        """Each queue's tasks by status (every status, 0 when none), its due backlog
        (pending, nextAttemptAt <= now()) and the age in seconds of its oldest due task,
        by the database clock: one entry per queue, every queue (sorted by name), and
        after them any removed queue whose resolved or cancelled tasks retention has not
        deleted yet, so the entries add up to every task."""

    def lateness_percentiles(self, window_s: int = 300) -> tuple[float | None, float | None]:
        """(p50, p99) in ms of the lateness (first byte sent minus nextAttemptAt) of the
        attempts started in the last `window_s` seconds by the database clock; nearest-rank
        percentiles; None when no attempt of the window measured one. ValueError when
        `window_s` is not positive."""

    def activity(self, window_s: int = 3600, bucket_s: int = 60) -> list[ActivityBucket]:
        """Attempts started in the last `window_s` seconds, in buckets of `bucket_s`
        seconds aligned on multiples of `bucket_s` since the epoch (the last holds the
        database's now), oldest first, empty buckets included: ceil(window_s / bucket_s)
        buckets. ValueError when either is not positive or there would be more than 1440
        buckets."""

    # -- key rotation (scheduler rotate-key) ---------------------------------------------

    def webhook_auth_page(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to `limit` (seq, task id, stored webhookAuth) of tasks that have one, with
        seq after `after`, in seq order."""

    def replace_webhook_auth(self, changes: Sequence[tuple[str, str, str]]) -> list[str]:
        """For each (task id, old, new), in one transaction: store `new` where the task
        still holds `old`; return the ids replaced."""

    # -- schedules (recurring tasks kept by the server; store/schedules.py) ----------------

    def create_schedule(self, new: NewSchedule) -> Schedule:
        """Store `new`, its first fire time the first after the database clock (none
        while paused), its webhookAuth sealed; CronError for an expression or a time zone
        that cannot be used, QueueNotFound, ScheduleConflict when the name is taken."""

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""

    def get_schedule(self, name: str) -> Schedule:
        """The schedule `name`; ScheduleNotFound."""

    def update_schedule(self, name: str, changes: Mapping[str, Any]) -> Schedule:
        """Change some of the fields in `schedules.CHANGEABLE` (model attribute names;
        webhook_auth None removes it). A new cron or time zone moves nextFireAt to the
        first fire time after the database clock. CronError, QueueNotFound,
        ScheduleNotFound; ValueError for a field that cannot change."""

    def delete_schedule(self, name: str) -> Schedule:
        """Remove the schedule and return it as it was (its tasks stay);
        ScheduleNotFound."""

    def set_schedule_paused(self, name: str, paused: bool) -> Schedule:
        """Pause (nextFireAt becomes null) or resume (nextFireAt the first fire time
        after the database clock: paused time is not caught up); unchanged when it is so
        already. ScheduleNotFound."""

    def trigger_schedule(self, name: str) -> Task:
        """Enqueue one run of the schedule's task now (no idempotency key; lastFireAt
        unchanged), waking dispatchers. ScheduleNotFound, QueueNotFound."""

    def fire_due_schedules(self, now: datetime | None = None) -> list[Task]:
        """Fire every schedule due at `now` (None: the database clock), each in its own
        transaction, as `schedules.plan_fire` decides; return the tasks created. Safe
        from any number of processes at once: a fire is enqueued once."""

    def next_schedule_fire(self) -> datetime | None:
        """The earliest nextFireAt of a schedule that is not paused, or None."""

    def schedule_due_in_s(self) -> float | None:
        """Seconds from the database clock to next_schedule_fire() (<= 0: due), or None."""

    def schedule_auth_page(self, after: str, limit: int) -> list[tuple[str, str]]:
        """scheduler rotate-key: up to `limit` (name, stored webhookAuth) of schedules
        that have one, with a name after `after` ("" for the first page), by name."""

    def replace_schedule_auth(self, changes: Sequence[tuple[str, str, str]]) -> list[str]:
        """For each (name, old, new), in one transaction: store `new` where the schedule
        still holds `old`; return the names replaced."""

    # -- moving between databases (scheduler export / import) ----------------------------

    def export_counts(self) -> ExportCounts:
        """Tasks by status (every status present, 0 when none), and how many running tasks
        hold a lease that has expired by the database clock."""

    def export_tasks(
        self, statuses: frozenset[TaskStatus], batch_size: int = 500
    ) -> Iterator[ExportedTask]:
        """Every task whose status is in `statuses`, in creation order, with its attempt
        history, its webhookAuth as stored (sealed when encrypted: the caller opens it) and
        its payload's stored JSON text. Read `batch_size` tasks a page, inside one read
        transaction that sees one snapshot: a task changed meanwhile is read as it was,
        once. The iterator holds a connection until it is exhausted or closed."""

    def export_queues(self) -> list[ExportedQueue]:
        """Every queue's name, config and pause state, by name."""

    def export_schedules(self) -> list[ExportedSchedule]:
        """Every schedule with every column, by name; webhookAuth as stored (sealed when
        encrypted: the caller opens it)."""

    def import_queues(self, queues: Sequence[ExportedQueue]) -> list[str]:
        """Create, in one transaction, the queues of `queues` this database lacks, with
        their config and pause state (`paused` None: not paused), and wake every
        dispatcher; return the names created. A queue here already is left as it is."""

    def import_schedules(self, schedules: Sequence[ExportedSchedule]) -> list[str]:
        """Create, in one transaction, the schedules this database lacks, every column
        kept (fire times included), webhookAuth (in clear) sealed with this store's key;
        return the names created. A schedule here already is left as it is. Their queues
        are the caller's to check."""

    def import_tasks(self, tasks: Sequence[ExportedTask]) -> ImportResult:
        """Create `tasks` as given, in one transaction, ids, queues, schedules, times,
        attempts and history kept; webhookAuth (in clear) sealed with this store's key. A
        task whose id exists already, or whose idempotency key another task holds, is
        skipped and reported. A `running` task comes in `pending`, due at its nextAttemptAt,
        its attempt in flight recorded lost: its lease belonged to the other database."""


MAX_POSITION = 2**63 - 1


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The keyset position in `cursor`; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("malformed cursor") from None
    prefix, _, number = raw.partition(":")
    # The position is a bigint: a bigger number would fail in SQL, not here.
    if prefix != "v1" or not number.isdigit() or len(number) > 19 or int(number) > MAX_POSITION:
        raise ValueError("malformed cursor")
    return int(number)
