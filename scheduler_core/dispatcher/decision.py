"""The decision after an attempt: resolved, tried again later, or stale.

The budget rule lives here and nowhere else (not in SQL): a task is tried at most
``max_retries + 1`` times per budget, the task's own maxRetries overriding the config's,
read at each failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from scheduler_core.judgement import clean_error
from scheduler_core.models import (
    ClaimedTask,
    DeliveryOutcome,
    LostAttempt,
    RecordedOutcome,
    RetryDecision,
)
from scheduler_core.runtime_config import RuntimeConfig

# lastError of a task that went stale because its notAfter passed (at the claim, or when
# the next retry would have come after it).
DEADLINE_ERROR = "deadline passed"
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
    if outcome.stale_now:  # a staleCode: stale at once, whatever budget is left
        return RetryDecision.stale()
    if budget_spent(task.attempts_in_budget, task.max_retries, config):
        return RetryDecision.stale()
    decision = policy(task, outcome, config)
    if decision.retry_in_ms is None:
        return decision
    return RetryDecision(min(max(int(decision.retry_in_ms), 0), MAX_RETRY_IN_MS))


def within_deadline(
    task: ClaimedTask, outcome: DeliveryOutcome, decision: RetryDecision | None
) -> tuple[DeliveryOutcome, RetryDecision | None]:
    """`outcome` and `decision`, unless the retry decided would come after the task's
    notAfter: then stale, and the outcome's error (lastError) says "deadline passed" with
    the attempt's own error after it."""
    if decision is None or decision.retry_in_ms is None or task.not_after is None:
        return outcome, decision
    next_at = db_now(task) + timedelta(milliseconds=decision.retry_in_ms)
    if next_at <= task.not_after:
        return outcome, decision
    error = DEADLINE_ERROR + (f": {outcome.error}" if outcome.error else "")
    return replace(outcome, error=clean_error(error, task)), RetryDecision.stale()


def db_now(task: ClaimedTask) -> datetime:
    """The database clock now, as the claim read it (nextAttemptAt plus the lateness at
    the claim) plus the monotonic time since: never the host's wall clock."""
    if task.next_attempt_at is None or not task.claimed_monotonic:
        return datetime.now(UTC)
    since_claim_ms = task.late_at_claim_ms + (time.monotonic() - task.claimed_monotonic) * 1000
    return task.next_attempt_at + timedelta(milliseconds=since_claim_ms)


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
