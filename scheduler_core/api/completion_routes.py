"""The completion URLs of asynchronous callbacks: `POST /callbacks/v1/complete/<token>`
and `POST /callbacks/v1/fail/<token>` (SPEC "Delivery rules", Scheduler-Async).

Outside /api/v1: no API key, the token is the credential (scheduler_core.completion).
A forged or altered token is 404 (nothing said about which part is wrong); a token for an
attempt that is no longer the one waiting (a later attempt began, or it was completed or
failed already) is 409; once the attempt's Scheduler-Async timeout (or the token's max
age) has passed, 410. Errors in the API's JSON error shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.api.schemas_completion import completion_result, fail_body
from scheduler_core.api.schemas_tasks import load
from scheduler_core.completion import COMPLETION_PATH, Action, BadToken, ExpiredToken
from scheduler_core.dispatcher.decision import budget_spent, decide, within_deadline
from scheduler_core.judgement import MAX_RETRY_AFTER_MS, clean_error
from scheduler_core.models import DeliveryOutcome, RecordedOutcome, RetryDecision
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.redaction import REDACTED, redact
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.base import QueueNotFound, Store
from scheduler_core.store.completions import AwaitedAttempt, Settled

log = logging.getLogger(__name__)
bp = Blueprint("completion", __name__, url_prefix=COMPLETION_PATH)

# lastError of an attempt failed through its fail URL without an `error`.
DEFAULT_FAIL_ERROR = "async: the receiver reported a failure"
# The answer a 202 started with stays the attempt's status code when it completes.
ASYNC_STATUS = 202
_REFUSALS = {
    Settled.NOT_FOUND: (404, "not_found", "No such task."),
    Settled.CONFLICT: (
        409,
        "conflict",
        "This attempt is no longer waiting for a completion: a later attempt began, or it "
        "was completed or failed already.",
    ),
    Settled.GONE: (410, "gone", "This attempt's Scheduler-Async timeout has passed."),
}


@bp.post("/complete/<token>")
def complete(token: str) -> Response:
    """Complete an asynchronous attempt.
    ---
    post:
      tags: [completion]
      description: The X-Scheduler-Complete-Url of a callback. A receiver that answered
        202 with `Scheduler-Async` calls it when the work is done; the task is resolved.
        One-time, for that attempt only; no API key (the token is the credential).
      parameters:
        - {name: token, in: path, required: true, schema: {type: string},
           description: "The signed token of the URL the callback carried."}
      responses:
        200:
          description: "The task is resolved."
          content:
            application/json:
              schema: CompletionResult
        404: {$ref: "#/components/responses/CompletionNotFound"}
        409: {$ref: "#/components/responses/CompletionConflict"}
        410: {$ref: "#/components/responses/CompletionGone"}
        503: {$ref: "#/components/responses/Unavailable"}
    """

    def settle(awaited: AwaitedAttempt, config: RuntimeConfig) -> RecordedOutcome:
        outcome = DeliveryOutcome(ok=True, status_code=ASYNC_STATUS, duration_ms=awaited.elapsed_ms)
        return RecordedOutcome(awaited.task.id, awaited.task.attempt, outcome, None)

    return _settle(token, "complete", settle)


@bp.post("/fail/<token>")
def fail(token: str) -> Response:
    """Fail an asynchronous attempt.
    ---
    post:
      tags: [completion]
      description: The X-Scheduler-Fail-Url of a callback. The attempt fails and the task
        is retried as any failure is (the retry policy, the budget), or goes stale.
        One-time, for that attempt only; no API key (the token is the credential).
      requestBody:
        required: false
        content:
          application/json:
            schema: FailBody
      parameters:
        - {name: token, in: path, required: true, schema: {type: string},
           description: "The signed token of the URL the callback carried."}
      responses:
        200:
          description: "The attempt failed; the task is pending or stale."
          content:
            application/json:
              schema: CompletionResult
        400: {$ref: "#/components/responses/BadRequest"}
        413: {$ref: "#/components/responses/PayloadTooLarge"}
        404: {$ref: "#/components/responses/CompletionNotFound"}
        409: {$ref: "#/components/responses/CompletionConflict"}
        410: {$ref: "#/components/responses/CompletionGone"}
        503: {$ref: "#/components/responses/Unavailable"}
    """
    error, retry_after_ms = _fail_body()

    def settle(awaited: AwaitedAttempt, config: RuntimeConfig) -> RecordedOutcome:
        task = awaited.task
        outcome = DeliveryOutcome(
            ok=False,
            status_code=ASYNC_STATUS,
            error=clean_error(receiver_error(error or DEFAULT_FAIL_ERROR), task),
            duration_ms=awaited.elapsed_ms,
            retry_after_ms=retry_after_ms,
        )
        decision: RetryDecision | None = decide(task, outcome, config, _plugins().retry_decision)
        if retry_after_ms is not None and not budget_spent(
            task.attempts_in_budget, task.max_retries, config
        ):
            decision = RetryDecision(min(retry_after_ms, config.retry_backoff_max_ms))
        outcome, decision = within_deadline(task, outcome, decision)  # notAfter
        return RecordedOutcome(task.id, task.attempt, outcome, decision, queue=task.queue)

    return _settle(token, "fail", settle)


SettleWith = Callable[[AwaitedAttempt, RuntimeConfig], RecordedOutcome]


def _settle(token: str, action: Action, settle: SettleWith) -> Response:
    plugins = _plugins()
    tokens = plugins.completion_tokens
    if tokens is None:
        raise ApiError(404, "not_found", "No such resource.")
    try:
        ref = tokens.read(token, action)
    except BadToken:
        log.info("a %s URL that is not genuine was refused (404)", action)
        raise ApiError(404, "not_found", "Unknown or invalid completion URL.") from None
    except ExpiredToken:
        log.info("an expired %s URL was refused (410)", action)
        raise ApiError(410, "gone", "This completion URL has expired.") from None
    # The queue's config is read first, outside the settling transaction.
    task = _store().get(ref.task_id)
    if task is None:
        raise ApiError(404, "not_found", "No such task.")
    config = _config(task.queue)
    result, recorded = _store().settle_attempt(
        ref.task_id, ref.attempt, lambda awaited: settle(awaited, config)
    )
    if result is not Settled.SETTLED or recorded is None:
        status, code, message = _REFUSALS.get(result, _REFUSALS[Settled.CONFLICT])
        log.info(
            "task=%s attempt=%d %s URL refused (%d): %s",
            ref.task_id,
            ref.attempt,
            action,
            status,
            message,
        )
        raise ApiError(status, code, message)
    plugins.metrics.attempt_ended(recorded, recorded.queue)
    if recorded.decision is None:
        task_status = "resolved"
    else:
        task_status = "stale" if recorded.decision.is_stale else "pending"
    log.info(
        "task=%s attempt=%d %s through its completion URL: %s%s",
        recorded.task_id,
        recorded.attempt,
        "completed" if action == "complete" else f"failed ({recorded.outcome.error})",
        task_status,
        ""
        if recorded.decision is None or recorded.decision.is_stale
        else f", retry in {recorded.decision.retry_in_ms} ms",
    )
    return jsonify(
        completion_result.dump(
            {
                "taskId": recorded.task_id,
                "attempt": recorded.attempt,
                "outcome": recorded.kind.value,
                "status": task_status,
            }
        )
    )


# A completion URL quoted in a fail body: its token is a credential for that attempt.
_COMPLETION_TOKEN = re.compile(r"(/callbacks/v1/(?:complete|fail)/)[A-Za-z0-9_.~%-]+")


def receiver_error(text: str) -> str:
    """A fail body's `error` without the secrets the task does not know of: the API keys,
    and the token of any completion URL it quotes (the task's own are redacted by
    clean_error)."""
    text = _COMPLETION_TOKEN.sub(r"\1" + REDACTED, text)
    return redact(text, _plugins().settings.api_keys)


def _fail_body() -> tuple[str | None, int | None]:
    """The fail URL's optional body (FailBodySchema): the error and the retry delay in ms.
    400 with the fields at fault when it is not valid."""
    if not request.get_data(cache=True).strip():
        return None, None
    body = load(fail_body, json_body(), "The fail body")
    seconds = body["retry_after_s"]
    retry_after_ms = None if seconds is None else min(seconds * 1000, MAX_RETRY_AFTER_MS)
    return body["error"], retry_after_ms


def _config(queue: str) -> RuntimeConfig:
    """The queue's config as it is now (max_retries and backoff are read at each failure)."""
    try:
        return _store().get_config(queue)
    except QueueNotFound:
        return RuntimeConfig()


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


def _plugins() -> PluginManager:
    plugins: PluginManager = current_app.extensions["scheduler_plugins"]
    return plugins
