"""Every hook scheduler-core calls, in one module.

Implement a hook by decorating a function named like the spec with
``scheduler_core.hookimpl`` and shipping it in a module or object that is registered
through the ``scheduler_core`` entry-point group. Built-in behaviour (HTTP delivery,
API keys, exponential backoff, delivery logs) is implemented the same way, marked
``trylast``, so any plugin that answers first takes over.

Hooks only ever gain arguments; none is renamed. An implementation may accept any
subset of a hook's arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from flask import Request

    from scheduler_core.models import (
        Callback,
        ClaimedTask,
        DeliveryOutcome,
        DeliveryReport,
        RecordedOutcome,
        RetryDecision,
        Task,
    )
    from scheduler_core.runtime_config import RuntimeConfig
    from scheduler_core.settings import Settings

hookspec = pluggy.HookspecMarker("scheduler_core")
hookimpl = pluggy.HookimplMarker("scheduler_core")


# -- delivery -------------------------------------------------------------------------


@hookspec
def scheduler_delivery_schemes() -> list[str]:  # type: ignore[empty-body]
    """Return the URL schemes this plugin delivers to, lower case (e.g. ``["amqp"]``).

    Every implementation is called; the union decides which ``webhookUrl`` values the
    API accepts at enqueue.
    """


@hookspec(firstresult=True)
def scheduler_deliver(  # type: ignore[empty-body]
    task: ClaimedTask, deadline: float, settings: Settings, callback: Callback
) -> DeliveryReport | DeliveryOutcome | None:
    """Send ``callback`` for one attempt of ``task``; return what happened, or None if
    its URL is not yours. The first non-None result wins.

    ``callback`` is the request the core built (``url``, ordered ``headers``, ``body``
    bytes): send it as it is, headers as message headers where the transport has no HTTP
    headers. ``deadline`` is a ``time.monotonic()`` value: no byte may be sent after it,
    and the call must return by then (name resolution, connecting, sending and reading a
    bounded answer included).

    Return a ``DeliveryReport`` of raw facts: ``answered(status, headers, body)``,
    ``accepted()`` for a broker's confirm, or ``failed(error, timed_out=...)``. The core
    judges it (success codes, Retry-After, a clean ``lastError``). Do not raise: an
    exception is a failed attempt with its message. A plugin written before ``callback``
    existed may still return a ``DeliveryOutcome`` with its own verdict.
    """


@hookspec(firstresult=True)
def scheduler_run_attempt(  # type: ignore[empty-body]
    task: ClaimedTask, deadline: float, config: RuntimeConfig, settings: Settings
) -> RecordedOutcome | None:
    """Run one attempt of ``task`` from start to decision.

    Return the ``RecordedOutcome``: the judged outcome, the retry decision (None when the
    task resolved) and the attempt's lateness.

    The core implements this (build the callback, ``scheduler_deliver``, judge the
    answer, ask ``scheduler_retry_decision`` when it failed). Wrap it, do not replace it:
    a ``hookimpl(wrapper=True)`` sees every attempt and its outcome, which is where
    metrics, tracing and delivery logs belong::

        @hookimpl(wrapper=True)
        def scheduler_run_attempt(task):
            started = time.monotonic()
            recorded = yield            # the attempt runs here
            observe(task, recorded, time.monotonic() - started)
            return recorded
    """


@hookspec
def scheduler_attempt_lost(recorded: RecordedOutcome) -> None:
    """Observe an attempt found lost: its dispatcher stopped (a crash, a kill) before
    recording an outcome, its lease expired, and a dispatcher's reaper has just recorded
    it as lost. Such an attempt never ends inside ``scheduler_run_attempt``, so its
    wrappers never see it; this is where they count it.

    ``recorded`` is what was stored: ``recorded.lost`` is True, ``recorded.kind`` is
    ``lost``, ``recorded.task_id`` and ``recorded.attempt`` name the attempt, and
    ``recorded.decision`` says whether the task is due again at once or stale. Called once
    per lost attempt, in the process whose reaper recorded it, on the dispatcher's thread:
    return quickly.

    Return nothing: the return value is ignored. An exception is logged and the reaper
    goes on.
    """


# -- enqueue --------------------------------------------------------------------------


@hookspec
def scheduler_task_enqueued(task: Task, traceparent: str | None) -> None:
    """Observe a task just created through ``POST /api/v1/tasks`` (one call per task
    created, an array's included; an idempotent repeat creates nothing and is not told).

    ``task`` is the task as stored (id, queue, webhook URL, due time, rules);
    ``traceparent`` is the W3C Trace Context the request carried and the task keeps
    (None when it carried none, or a malformed one). Called in the API process after the
    tasks are committed, on the request's thread: return quickly.

    Return nothing: the return value is ignored. An exception is logged and the request
    still succeeds (the tasks are stored already).
    """


# -- API auth -------------------------------------------------------------------------


@hookspec(firstresult=True)
def scheduler_authorize(request: Request, settings: Settings) -> bool | None:  # type: ignore[empty-body]  # noqa: E501
    """Decide whether an ``/api/v1`` request, or a dashboard (``/ui``) request, may proceed.

    A dashboard request arrives with the key its sign-in cookie holds as
    ``Authorization: Bearer <key>`` (no such header when it holds none), so one
    implementation guards both.

    Return True to let it through, False to answer 401 and do nothing, or None to leave
    the decision to the next plugin. The first non-None result wins; when every plugin
    returns None the request proceeds.
    """


# -- retry policy ---------------------------------------------------------------------


@hookspec(firstresult=True)
def scheduler_retry_decision(  # type: ignore[empty-body]
    task: ClaimedTask, outcome: DeliveryOutcome, config: RuntimeConfig
) -> RetryDecision | None:
    """Decide when a failed task is tried again.

    Called only for a failed attempt that still has budget left (the core makes a task
    stale on its own once ``max_retries + 1`` attempts failed). ``outcome`` is the core's
    judgement: ``status_code``, a clean ``error``, ``retry_after_ms`` from a Retry-After
    header. Return ``RetryDecision(retry_in_ms=N)`` to try again N ms from now by the
    database clock, ``RetryDecision.stale()`` to give up now, or None to leave it to the
    next plugin.
    """
