"""Value objects shared by the store, the dispatcher, the API and plugins."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from scheduler_core.runtime_config import RuntimeConfig

# The queue a task goes to when it names none; it always exists and cannot be removed.
DEFAULT_QUEUE = "default"


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RESOLVED = "resolved"
    STALE = "stale"
    CANCELLED = "cancelled"


class AttemptOutcome(enum.StrEnum):
    """How one delivery attempt ended, as the attempt history shows it."""

    RESOLVED = "resolved"
    FAILED = "failed"
    SNOOZED = "snoozed"  # the receiver asked to be called later (Scheduler-Snooze): no retry spent
    LOST = "lost"  # its dispatcher stopped before recording anything; the lease expired


# A rule of successCodes / staleCodes: a status code (100..599) or a class like "2xx".
StatusRule = int | str


@dataclass(frozen=True)
class NewTask:
    """A validated enqueue request, before the store gives it an id."""

    webhook_url: str
    webhook_auth: str | None = None
    execute_at: datetime | None = None  # None: due now by the database clock
    payload: Any = None
    idempotency_key: str | None = None
    max_retries: int | None = None
    queue: str = DEFAULT_QUEUE
    schedule: str | None = None  # the schedule whose fire this is, None through the API
    # Delivery rules (SPEC.md "Delivery rules"): None means the default.
    not_after: datetime | None = None  # never called after this; stale when it passes
    success_codes: tuple[StatusRule, ...] | None = None  # default ("2xx",)
    stale_codes: tuple[StatusRule, ...] | None = None  # default: none
    traceparent: str | None = None  # W3C Trace Context of the enqueue, sent with callbacks


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


# A field of RuleChange that PATCH did not name: the task keeps its value.
UNCHANGED = _Unchanged.UNCHANGED


@dataclass(frozen=True)
class RuleChange:
    """PATCH's change to a pending task's delivery rules: each field UNCHANGED, or its new
    value (None: back to the default)."""

    not_after: datetime | None | _Unchanged = UNCHANGED
    success_codes: tuple[StatusRule, ...] | None | _Unchanged = UNCHANGED
    stale_codes: tuple[StatusRule, ...] | None | _Unchanged = UNCHANGED


@dataclass(frozen=True)
class Task:
    """A stored task as the API shows it. `webhook_auth` never leaves the process."""

    id: str
    webhook_url: str
    execute_at: datetime
    status: TaskStatus
    attempts: int
    max_retries: int | None
    next_attempt_at: datetime
    payload: Any
    idempotency_key: str | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    queue: str = DEFAULT_QUEUE
    schedule: str | None = None  # the schedule that made the task, if one did
    not_after: datetime | None = None
    success_codes: tuple[StatusRule, ...] | None = None
    stale_codes: tuple[StatusRule, ...] | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a list or a bulk action takes; every field set must match.

    `statuses` None takes every status (an empty set takes none). `queue` None takes every
    queue. `created_before` / `created_after` bound `created_at` to [after, before).
    """

    statuses: frozenset[TaskStatus] | None = None
    queue: str | None = None
    created_before: datetime | None = None  # created_at <  this
    created_after: datetime | None = None  # created_at >= this


@dataclass(frozen=True)
class ClaimedTask:
    """A task a dispatcher holds under a lease, with what delivery needs."""

    id: str
    webhook_url: str
    webhook_auth: str | None = field(repr=False)
    execute_at: datetime
    payload_json: str  # the payload exactly as stored, as JSON text
    attempt: int  # 1 for the first try; counts every attempt ever started
    attempts_in_budget: int  # attempts since the task was enqueued or last retried
    max_retries: int | None  # the task's override; None means the config's value
    # When the task was due and how late the claim came, by the database clock (ms), and
    # time.monotonic() when the claim returned: lateness is measured from these.
    next_attempt_at: datetime | None = None
    late_at_claim_ms: float = 0.0
    claimed_monotonic: float = 0.0
    # Why the stored webhookAuth could not be decrypted (no key, or none that opens it):
    # then webhook_auth is None and the attempt fails with this error, sending nothing.
    auth_error: str | None = None
    # The task's queue: whose config its outcome is decided with; the metrics' label.
    queue: str = DEFAULT_QUEUE
    # The sender's delivery rules (None: the defaults) and trace context.
    not_after: datetime | None = None
    success_codes: tuple[StatusRule, ...] | None = None
    stale_codes: tuple[StatusRule, ...] | None = None
    traceparent: str | None = None
    # Scheduler-Snooze answers in a row before this attempt (at most 100, then a failure).
    snoozes_in_row: int = 0
    # host[:port] of webhook_url, lower case: the key of per-host backpressure.
    target_host: str | None = None


@dataclass(frozen=True)
class Callback:
    """One attempt's request, built by the core; every transport sends exactly this.

    `headers` are the callback's headers in order (Content-Type, User-Agent,
    X-Scheduler-Task-Id, X-Scheduler-Attempt, then traceparent when the task has one,
    then Authorization when the task has webhookAuth, then X-Scheduler-Complete-Url and
    X-Scheduler-Fail-Url (the attempt's completion URLs, see scheduler_core.completion),
    then webhook-id, webhook-timestamp,
    webhook-signature when callbacks are signed): an HTTP plugin sends them as request
    headers, a broker plugin as message headers or fields. `body` is the JSON envelope as
    bytes, exactly what was signed.
    """

    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    task_id: str = ""
    attempt: int = 1
    timeout_ms: int = 0  # the attempt's budget, http_callback_timeout_ms


@dataclass(frozen=True)
class DeliveryReport:
    """The raw facts of one delivery attempt, as a delivery plugin saw them.

    The core judges them (see ``scheduler_core.judgement``): a plugin reports, it never
    decides whether the task resolved. Three shapes, one per constructor:

    - ``answered(status, headers, body)``: the receiver answered (HTTP); the core reads
      the status against the task's rules, Retry-After from the headers, and quotes the
      start of the body in ``lastError`` on failure.
    - ``accepted()``: a broker took the message (a confirm, an ack); the attempt succeeded.
    - ``failed(error, timed_out=False)``: no answer came; ``error`` says why in a few
      words ("connection refused", "broker nack"). With ``timed_out`` the deadline passed
      first, and ``error`` names the step that was running ("no complete response").

    ``sent_at`` is ``time.monotonic()`` when the first byte of the request went out (None
    if nothing was sent): lateness is measured to it.
    """

    status_code: int | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    body: bytes = field(default=b"", repr=False)
    error: str | None = None
    timed_out: bool = False
    sent_at: float | None = None

    @classmethod
    def answered(
        cls,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        sent_at: float | None = None,
    ) -> DeliveryReport:
        return cls(status_code=status_code, headers=dict(headers or {}), body=body, sent_at=sent_at)

    @classmethod
    def accepted(cls, *, sent_at: float | None = None) -> DeliveryReport:
        return cls(sent_at=sent_at)

    @classmethod
    def failed(
        cls, error: str, *, timed_out: bool = False, sent_at: float | None = None
    ) -> DeliveryReport:
        return cls(error=error, timed_out=timed_out, sent_at=sent_at)


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one delivery attempt came to, as the core judged it.

    This is what the retry policy sees. A delivery plugin written for the first version
    of ``scheduler_deliver`` may still return one; its ``error`` is then cleaned as the
    core's own (printable, at most 500 characters, no webhookAuth).
    """

    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    retry_after_ms: int | None = None  # from a Retry-After header, when the answer had one
    # The answer's status is in the task's staleCodes: stale at once, no retry spent.
    stale_now: bool = False
    # Scheduler-Snooze: call again this much later (ms), no retry spent.
    snooze_ms: int | None = None
    # A 202 with Scheduler-Async: the receiver reports within this many seconds through
    # the attempt's completion URLs; the task stays running until then.
    async_timeout_s: int | None = None


@dataclass(frozen=True)
class RetryDecision:
    """When to try a failed task again; `retry_in_ms` None means it is stale."""

    retry_in_ms: int | None

    @classmethod
    def stale(cls) -> RetryDecision:
        return cls(retry_in_ms=None)

    @property
    def is_stale(self) -> bool:
        return self.retry_in_ms is None


@dataclass(frozen=True)
class AttemptRecord:
    """One delivery attempt as `GET /tasks/{id}/attempts` shows it."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    status_code: int | None
    error: str | None
    outcome: AttemptOutcome | None = None  # None while the attempt is in flight
    lateness_ms: int | None = None  # first byte sent minus nextAttemptAt


@dataclass(frozen=True)
class RecordedOutcome:
    """A judged attempt with the decision taken for it, ready to store."""

    task_id: str
    attempt: int
    outcome: DeliveryOutcome
    decision: RetryDecision | None  # None when the outcome resolved the task
    lateness_ms: int | None = None
    lost: bool = False  # the attempt's lease expired before anything was recorded
    queue: str = DEFAULT_QUEUE  # the task's queue (set for lost attempts, for observers)
    # The receiver snoozed the task: `decision` says when it is due again, and the attempt
    # does not count against its retry budget.
    snoozed: bool = False

    @property
    def awaiting(self) -> bool:
        """A 202 with Scheduler-Async: the task stays running and the attempt open until
        its completion URL is called or its timeout passes (no outcome stored yet)."""
        return self.decision is None and self.outcome.async_timeout_s is not None

    @property
    def kind(self) -> AttemptOutcome:
        if self.decision is None:
            return AttemptOutcome.RESOLVED
        if self.snoozed:
            return AttemptOutcome.SNOOZED
        return AttemptOutcome.LOST if self.lost else AttemptOutcome.FAILED


@dataclass(frozen=True)
class LostAttempt:
    """A running task whose lease expired: its dispatcher stopped before recording."""

    task_id: str
    attempt: int
    attempts_in_budget: int
    max_retries: int | None
    queue: str = DEFAULT_QUEUE
    # Set when the attempt was waiting for its completion URL (a 202 with
    # Scheduler-Async): its timeout passed, which is a failed attempt, not a lost one.
    async_timeout_s: int | None = None


@dataclass(frozen=True)
class QueueClaim:
    """What one claim in a queue got: the tasks, and when the queue's own limits across
    every dispatcher (max_dispatches_per_second, max_concurrent_dispatches) let the next
    one start, in seconds from now (None: they do not hold anything back)."""

    tasks: list[ClaimedTask]
    wait_s: float | None = None
    limited_by: str | None = None  # "rate" or "concurrency" when a limit cut the claim


@dataclass(frozen=True)
class QueueCounts:
    """One queue's tasks by status and its due backlog, by the database clock.

    `counts` holds every TaskStatus (0 when none). `due_backlog` is the pending tasks whose
    nextAttemptAt has come; `oldest_due_age_s` is how long (seconds) the oldest of them has
    been due, 0.0 when none is.
    """

    queue: str
    counts: Mapping[TaskStatus, int]
    due_backlog: int
    oldest_due_age_s: float


@dataclass(frozen=True)
class ActivityBucket:
    """Delivery attempts started in one time bucket (see `Store.activity`).

    `failed` counts failed and lost attempts; attempts still in flight count in `attempts`
    only. Lateness percentiles (ms, first byte sent minus nextAttemptAt) are over the
    bucket's finished attempts that measured one; None when there is none.
    """

    start: datetime  # UTC start of the bucket
    attempts: int
    resolved: int
    failed: int
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None


@dataclass(frozen=True)
class QueueState:
    """One queue as a dispatcher reads it at every wake-up: its config row, whether it is
    paused, and the earliest nextAttemptAt of its pending tasks (None when none is
    pending, or when the queue is paused: nothing of it is claimed then)."""

    name: str
    config: RuntimeConfig
    paused: bool
    next_due: datetime | None


@dataclass(frozen=True)
class DispatchState:
    """What a dispatcher reads at every wake-up, in one query: every queue's state, by
    name, and the database clock that `next_due` times are compared with."""

    db_now: datetime
    queues: tuple[QueueState, ...] = ()
    # when the earliest held host (blocked, or at its limits) may take tasks again, by
    # the database clock; None when no host is held (store/hosts.py)
    hosts_reopen_at: datetime | None = None

    @property
    def config(self) -> RuntimeConfig:
        """The `default` queue's config: what process-wide work (the reaper's fallback,
        retention's fallback, tick()) reads."""
        for queue in self.queues:
            if queue.name == DEFAULT_QUEUE:
                return queue.config
        return RuntimeConfig()

    @property
    def next_due(self) -> datetime | None:
        """The earliest nextAttemptAt over the queues that are not paused."""
        times = [q.next_due for q in self.queues if q.next_due is not None]
        return min(times) if times else None

    def due_in_s_of(self, queue: QueueState) -> float | None:
        """Seconds until `queue`'s earliest pending task is due (<= 0: due now)."""
        if queue.next_due is None:
            return None
        return (queue.next_due - self.db_now).total_seconds()

    @property
    def hosts_reopen_in_s(self) -> float | None:
        """Seconds until the earliest held host may take tasks again (None: none held)."""
        if self.hosts_reopen_at is None:
            return None
        return (self.hosts_reopen_at - self.db_now).total_seconds()

    @property
    def due_in_s(self) -> float | None:
        """Seconds until the earliest pending task of any running queue is due."""
        if self.next_due is None:
            return None
        return (self.next_due - self.db_now).total_seconds()


@dataclass(frozen=True)
class QueueInfo:
    """A queue as `GET /api/v1/queues/{name}` shows it: its row of the configuration
    table (`config`, `paused`, when it was created and last changed), its tasks by status
    (`counts` holds every TaskStatus, 0 when none) and its due backlog (pending tasks whose
    nextAttemptAt has come), by the database clock."""

    name: str
    config: RuntimeConfig
    paused: bool
    counts: Mapping[TaskStatus, int]
    due_backlog: int
    created_at: datetime
    updated_at: datetime
