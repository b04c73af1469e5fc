"""Every hook scheduler-core calls, in one module.

Implement a hook by decorating a function named like the spec with
``scheduler_core.hookimpl`` and shipping it in a module or object that is registered
through the ``scheduler_core`` entry-point group. Built-in behaviour (HTTP delivery,
API keys, exponential backoff) is implemented the same way, marked ``trylast``, so any
plugin that answers first takes over.

Hooks only ever gain arguments; none is renamed. An implementation may accept any
subset of a hook's arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from flask import Request

    from scheduler_core.models import ClaimedTask, DeliveryOutcome, RetryDecision
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
def scheduler_deliver(
    task: ClaimedTask, deadline: float, settings: Settings
) -> DeliveryOutcome | None:  # type: ignore[empty-body]  # noqa: E501
    """Deliver one task and return the outcome, or None if the URL is not yours.

    ``deadline`` is a ``time.monotonic()`` value: the attempt must be over by then
    (connect, send and the bounded response read included). Return
    ``DeliveryOutcome(ok=True, ...)`` for a success; anything else is a failed attempt.
    Do not raise: an exception is recorded as a failed attempt with its message.
    The first non-None result wins.
    """


# -- API auth -------------------------------------------------------------------------


@hookspec(firstresult=True)
def scheduler_authorize(request: Request, settings: Settings) -> bool | None:  # type: ignore[empty-body]  # noqa: E501
    """Decide whether an ``/api/v1`` request may proceed.

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
    stale on its own once ``max_retries + 1`` attempts failed). Return
    ``RetryDecision(retry_in_ms=N)`` to try again N ms from now by the database clock,
    ``RetryDecision.stale()`` to give up now, or None to leave it to the next plugin.
    """
