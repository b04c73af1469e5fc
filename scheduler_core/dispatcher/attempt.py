"""One attempt from start to decision: the core's `scheduler_run_attempt`.

Build the callback, let a delivery plugin send it, judge what came back, decide what
follows. Registered as a built-in plugin object (it needs the plugin manager to call the
delivery and retry hooks), ``trylast``; observers wrap it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from scheduler_core.callback import build_callback
from scheduler_core.dispatcher.decision import DEADLINE_ERROR, db_now, decide, within_deadline
from scheduler_core.hookspecs import hookimpl
from scheduler_core.judgement import clean_error, judge, judge_legacy, snooze_error
from scheduler_core.models import ClaimedTask, DeliveryOutcome, RecordedOutcome, RetryDecision
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.signing import Signer

if TYPE_CHECKING:
    from scheduler_core.plugin_manager import PluginManager

PLUGIN_NAME = "scheduler_core.attempt"


class AttemptPipeline:
    def __init__(self, plugins: PluginManager):
        self._plugins = plugins
        # Built once: a malformed secret in Settings stops the start, not every attempt.
        secrets = plugins.settings.signing_secrets
        self._signer = Signer(secrets) if secrets else None

    @hookimpl(trylast=True)
    def scheduler_run_attempt(
        self, task: ClaimedTask, deadline: float, config: RuntimeConfig
    ) -> RecordedOutcome:
        started = time.monotonic()
        cut_at = None
        if task.not_after is not None:  # no byte may go out after notAfter
            left_s = (task.not_after - db_now(task)).total_seconds()
            if left_s <= 0:
                return past_deadline(task)
            if started + left_s < deadline:
                deadline = cut_at = started + left_s
        tokens = self._plugins.completion_tokens
        callback = build_callback(
            task,
            config.http_callback_timeout_ms,
            self._signer,
            completion_urls=tokens.urls(task.id, task.attempt) if tokens is not None else None,
        )
        raw = self._plugins.deliver(task, callback, deadline)
        duration_ms = int((time.monotonic() - started) * 1000)
        if isinstance(raw, DeliveryOutcome):
            outcome, sent_at = judge_legacy(task, raw, duration_ms), None
        else:
            outcome = judge(task, raw, config.http_callback_timeout_ms, duration_ms)
            sent_at = raw.sent_at
            if raw.timed_out and cut_at is not None:  # notAfter's deadline, not the timeout's
                step = raw.error or "no complete response"
                outcome = replace(outcome, error=clean_error(f"{step} before notAfter", task))
        now_config = self._plugins.current_config(config, task.queue)  # at the failure
        decision = decide(task, outcome, now_config, self._plugins.retry_decision)
        outcome, decision = within_deadline(task, outcome, decision)
        # A snooze past notAfter is no snooze: the task is stale, the attempt failed.
        snoozed = outcome.snooze_ms is not None and decision is not None and not decision.is_stale
        if snoozed and decision is not None:  # lastError says the delay as capped
            outcome = replace(
                outcome, error=snooze_error(outcome.status_code, decision.retry_in_ms or 0)
            )
        return RecordedOutcome(
            task.id,
            task.attempt,
            outcome,
            decision,
            lateness_ms(task, sent_at or started),
            snoozed=snoozed,
        )


def past_deadline(task: ClaimedTask) -> RecordedOutcome:
    """An attempt claimed before the task's notAfter that could only have started after
    it (a claim under load, a queue at its rate limit): nothing is sent, the task is
    stale."""
    outcome = DeliveryOutcome(ok=False, error=f"{DEADLINE_ERROR} (nothing sent)")
    return RecordedOutcome(task.id, task.attempt, outcome, RetryDecision.stale())


def abandoned(task: ClaimedTask, config: RuntimeConfig, plugins: PluginManager) -> RecordedOutcome:
    """The outcome of an attempt whose plugin overran its deadline and was left behind."""
    budget = config.http_callback_timeout_ms
    outcome = DeliveryOutcome(
        ok=False,
        error=clean_error(
            f"timeout: the delivery plugin returned no outcome within the {budget} ms "
            "callback timeout"
        ),
        duration_ms=budget,
    )
    decision = decide(
        task, outcome, plugins.current_config(config, task.queue), plugins.retry_decision
    )
    outcome, decision = within_deadline(task, outcome, decision)
    return RecordedOutcome(task.id, task.attempt, outcome, decision)


def lateness_ms(task: ClaimedTask, sent_at: float) -> int | None:
    """When the first byte went out, minus nextAttemptAt: the claim's lateness by the
    database clock plus the time since the claim by the monotonic one."""
    if not task.claimed_monotonic:
        return None
    return max(0, round(task.late_at_claim_ms + (sent_at - task.claimed_monotonic) * 1000))
