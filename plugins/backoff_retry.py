"""Built-in retry policy: exponential backoff, Retry-After honoured on 429 and 503."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import RetryDecision

if TYPE_CHECKING:
    from scheduler_core.models import ClaimedTask, DeliveryOutcome
    from scheduler_core.runtime_config import RuntimeConfig

RETRY_AFTER_STATUSES = frozenset({429, 503})


def backoff_ms(retry_number: int, config: RuntimeConfig) -> int:
    """Delay before retry `retry_number` (1 for the first retry), capped."""
    exponent = min(max(retry_number, 1) - 1, 62)  # past 2**62 the cap has long won
    return min(config.retry_backoff_ms * (2**exponent), config.retry_backoff_max_ms)


@hookimpl(trylast=True)
def scheduler_retry_decision(
    task: ClaimedTask, outcome: DeliveryOutcome, config: RuntimeConfig
) -> RetryDecision:
    if outcome.status_code in RETRY_AFTER_STATUSES and outcome.retry_after_ms is not None:
        return RetryDecision(min(outcome.retry_after_ms, config.retry_backoff_max_ms))
    return RetryDecision(backoff_ms(task.attempts_in_budget, config))
