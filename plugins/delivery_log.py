"""Built-in observer: one log line per attempt, by wrapping `scheduler_run_attempt`.

The dispatcher itself logs no deliveries; this plugin sees every attempt as it runs and
what was decided, as metrics and tracing plugins can.
"""

from __future__ import annotations

import logging
from collections.abc import Generator

from scheduler_core.hookspecs import hookimpl
from scheduler_core.logs import loggable_url
from scheduler_core.models import ClaimedTask, RecordedOutcome

log = logging.getLogger("scheduler_core.delivery")


@hookimpl(wrapper=True)
def scheduler_run_attempt(task: ClaimedTask) -> Generator[None, RecordedOutcome, RecordedOutcome]:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "task=%s attempt=%d delivering to %s",
            task.id,
            task.attempt,
            loggable_url(task.webhook_url),
        )
    recorded = yield
    log_outcome(task, recorded)
    return recorded


def log_outcome(task: ClaimedTask, recorded: RecordedOutcome) -> None:
    outcome, decision = recorded.outcome, recorded.decision
    if decision is None and outcome.async_timeout_s is not None:
        log.info(
            "task=%s attempt=%d accepted (202, Scheduler-Async): waiting up to %d s for its "
            "completion URL",
            task.id,
            task.attempt,
            outcome.async_timeout_s,
        )
    elif recorded.snoozed and decision is not None:
        log.info(
            "task=%s attempt=%d snoozed by the receiver (status %s): due again in %d ms",
            task.id,
            task.attempt,
            outcome.status_code,
            decision.retry_in_ms,
        )
    elif decision is None:
        log.info(
            "task=%s attempt=%d resolved status=%s duration_ms=%d lateness_ms=%s",
            task.id,
            task.attempt,
            outcome.status_code,
            outcome.duration_ms,
            recorded.lateness_ms,
        )
    elif decision.is_stale:
        # Why it is stale (budget spent, a staleCode, the deadline) is in the error.
        log.warning(
            "task=%s attempt=%d failed (%s); stale",
            task.id,
            task.attempt,
            outcome.error,
        )
    else:
        log.info(
            "task=%s attempt=%d failed (%s); retry in %d ms",
            task.id,
            task.attempt,
            outcome.error,
            decision.retry_in_ms,
        )
