"""OpenTelemetry spans for each enqueue and each delivery attempt (optional).

Registered by the plugin manager only with ``SCHEDULER_OTEL=1`` and the ``otel`` extra
installed (``pip install 'scheduler-core[otel]'``: opentelemetry-api and -sdk). The spans
go to the process's tracer provider: configure one (exporter, sampler, resource) the usual
OpenTelemetry way, e.g. the SDK's environment variables or ``opentelemetry-instrument``;
with none configured the API's no-op provider drops them.

- ``scheduler enqueue`` (kind PRODUCER): one per task created through the API, a child of
  the request's ``traceparent`` when it had one. Attributes ``scheduler.task_id``,
  ``scheduler.queue``.
- ``scheduler attempt`` (kind CLIENT): one per delivery attempt, wrapping
  ``scheduler_run_attempt``, a child of the task's stored ``traceparent`` (so every
  attempt of a task sits in the trace of the request that enqueued it). Attributes
  ``scheduler.task_id``, ``scheduler.queue``, ``scheduler.attempt``,
  ``http.response.status_code`` (when the answer had one) and ``scheduler.outcome``
  (resolved, failed, snoozed...); status ERROR for an attempt that did not resolve, with
  its (clean, redacted) error as the description. Never the webhookAuth, the payload or
  the URL's credentials: the URL is not recorded at all.

The callback itself carries the task's stored ``traceparent`` (SPEC.md), not the attempt
span's: a receiver joins the enqueuer's trace either way.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from scheduler_core import __version__
from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import ClaimedTask, RecordedOutcome, Task

ATTEMPT_SPAN = "scheduler attempt"
ENQUEUE_SPAN = "scheduler enqueue"
_PROPAGATOR = TraceContextTextMapPropagator()


def parent_context(traceparent: str | None) -> Context | None:
    """The span context a stored traceparent names, as a parent; None without one."""
    if traceparent is None:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


class OtelObserver:
    """The spans, from `tracer_provider` (default: the global one, read at each span so
    a provider set after start is used)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = tracer_provider

    def _tracer(self) -> Tracer:
        return trace.get_tracer("scheduler_core", __version__, tracer_provider=self._provider)

    @hookimpl(wrapper=True)
    def scheduler_run_attempt(
        self, task: ClaimedTask
    ) -> Generator[None, RecordedOutcome | None, RecordedOutcome | None]:
        attributes: dict[str, Any] = {
            "scheduler.task_id": task.id,
            "scheduler.queue": task.queue,
            "scheduler.attempt": task.attempt,
        }
        with self._tracer().start_as_current_span(
            ATTEMPT_SPAN,
            kind=SpanKind.CLIENT,
            context=parent_context(task.traceparent),
            attributes=attributes,
            record_exception=True,
        ) as span:
            recorded = yield
            if recorded is not None:
                outcome = recorded.outcome
                if outcome.status_code is not None:
                    span.set_attribute("http.response.status_code", outcome.status_code)
                span.set_attribute("scheduler.outcome", recorded.kind.value)
                if recorded.decision is not None:
                    span.set_status(Status(StatusCode.ERROR, outcome.error or None))
            return recorded

    @hookimpl
    def scheduler_task_enqueued(self, task: Task, traceparent: str | None) -> None:
        span = self._tracer().start_span(
            ENQUEUE_SPAN,
            kind=SpanKind.PRODUCER,
            context=parent_context(traceparent),
            attributes={"scheduler.task_id": task.id, "scheduler.queue": task.queue},
        )
        span.end()
