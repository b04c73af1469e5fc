"""Value objects shared by the store, the dispatcher, the API and plugins."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RESOLVED = "resolved"
    STALE = "stale"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class NewTask:
    """A validated enqueue request, before the store gives it an id."""

    webhook_url: str
    webhook_auth: str | None = None
    execute_at: datetime | None = None  # None: due now by the database clock
    payload: Any = None
    idempotency_key: str | None = None
    max_retries: int | None = None


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


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one delivery attempt came to."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    retry_after_ms: int | None = None  # from a Retry-After header, when the plugin saw one


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


@dataclass(frozen=True)
class RecordedOutcome:
    """A delivery outcome with the decision taken for it, ready to store."""

    task_id: str
    attempt: int
    outcome: DeliveryOutcome
    decision: RetryDecision | None  # None when the outcome resolved the task
