"""The decision after an attempt: resolved, tried again later, or stale.

The budget rule lives here and nowhere else (not in SQL): a task is tried at most
``max_retries + 1`` times per budget, the task's own maxRetries overriding the config's,
read at each failure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from scheduler_core.models import (
    ClaimedTask,
    DeliveryOutcome,
    LostAttempt,
    RecordedOutcome,
    RetryDecision,
)
from scheduler_core.runtime_config import RuntimeConfig

LEASE_EXPIRED_ERROR = "lease expired: the dispatcher stopped before recording an outcome"
# A retry policy's delay is kept within this (a year): a bigger one would overflow the
# database's time arithmetic and spoil the write of every outcome beside it.
MAX_RETRY_IN_MS = 366 * 86_400_000

RetryPolicy = Callable[[ClaimedTask, DeliveryOutcome, RuntimeConfig], RetryDecision]


def budget_spent(attempts_in_budget: int, max_retries: int | None, config: RuntimeConfig) -> bool:
    """True when `attempts_in_budget` attempts leave no budget: max_retries + 1 in all."""
    limit = max_retries if max_retries is not None else config.max_retries
    return attempts_in_budget >= limit + 1


def decide(
    task: ClaimedTask, outcome: DeliveryOutcome, config: RuntimeConfig, policy: RetryPolicy
) -> RetryDecision | None:
    """None when `outcome` resolved the task; else when to try again, or stale.

    The retry policy is asked only while budget is left.
    """
    if outcome.ok:
        return None
    if outcome.snooze_ms is not None:  # the receiver's own delay: no retry spent, capped
        return RetryDecision(min(max(outcome.snooze_ms, 0), config.retry_backoff_max_ms))
    if budget_spent(task.attempts_in_budget, task.max_retries, config):
        return RetryDecision.stale()
    decision = policy(task, outcome, config)
    if decision.retry_in_ms is None:
        return decision
    return RetryDecision(min(max(int(decision.retry_in_ms), 0), MAX_RETRY_IN_MS))


def decide_lost(lost: LostAttempt, config: RuntimeConfig) -> RecordedOutcome:
    """A lost attempt counts like a failed one; with budget left the task is due at once."""
    stale = budget_spent(lost.attempts_in_budget, lost.max_retries, config)
    return RecordedOutcome(
        task_id=lost.task_id,
        attempt=lost.attempt,
        outcome=DeliveryOutcome(ok=False, error=LEASE_EXPIRED_ERROR),
        decision=RetryDecision.stale() if stale else RetryDecision(0),
        lost=True,
        queue=lost.queue,
    )


ASYNC_TIMEOUT_ERROR = "async: no completion within {seconds} s"


def decide_async_timeout(
    lost: LostAttempt, config: RuntimeConfig, policy: RetryPolicy
) -> RecordedOutcome:
    """An attempt answered 202 with Scheduler-Async whose completion URL was not called in
    time: a failed attempt (not a lost one), retried through the policy like any failure."""
    seconds = lost.async_timeout_s or 0
    outcome = DeliveryOutcome(
        ok=False,
        status_code=202,
        error=ASYNC_TIMEOUT_ERROR.format(seconds=seconds),
        duration_ms=seconds * 1000,
    )
    task = ClaimedTask(
        id=lost.task_id,
        webhook_url="",
        webhook_auth=None,
        execute_at=datetime.now(UTC),
        payload_json="null",
        attempt=lost.attempt,
        attempts_in_budget=lost.attempts_in_budget,
        max_retries=lost.max_retries,
        queue=lost.queue,
    )
    return RecordedOutcome(
        lost.task_id, lost.attempt, outcome, decide(task, outcome, config, policy), queue=lost.queue
    )
