"""The optional OpenTelemetry observer (plugins/otel.py): a span per enqueue and per
attempt, children of the enqueue's traceparent, read back with the SDK's in-memory
exporter; and nothing at all unless SCHEDULER_OTEL is set and the extra imports."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from scheduler_core.api import create_app
from scheduler_core.plugin_manager import OPTIONAL_PLUGINS, PluginManager
from scheduler_core.plugins.otel import ATTEMPT_SPAN, ENQUEUE_SPAN, OtelObserver
from scheduler_core.settings import Settings
from tests.conftest import set_config
from tests.dispatch.helpers import enqueue

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
OTEL_NAME = OPTIONAL_PLUGINS[0]


@pytest.fixture
def exporter(plugins: PluginManager) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plugins.register(OtelObserver(tracer_provider=provider), name="otel-under-test")
    return exporter


def test_a_span_per_attempt_in_the_enqueuers_trace(
    client, dispatcher, receiver, store, exporter
) -> None:
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/traced", statuses=[503, 200])
    response = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/traced"), "webhookAuth": "Bearer s3cret"},
        headers={"traceparent": TRACEPARENT},
    )
    task_id = response.json["id"]
    dispatcher.tick()
    dispatcher.tick()

    spans = exporter.get_finished_spans()
    [enqueued] = [s for s in spans if s.name == ENQUEUE_SPAN]
    attempts = [s for s in spans if s.name == ATTEMPT_SPAN]
    assert enqueued.kind is SpanKind.PRODUCER
    assert enqueued.attributes["scheduler.task_id"] == task_id
    assert len(attempts) == 2
    for span in [enqueued, *attempts]:
        assert span.context.trace_id == TRACE_ID
        assert span.parent is not None and span.parent.span_id == PARENT_ID
    first, second = attempts
    assert first.kind is SpanKind.CLIENT
    assert dict(first.attributes) == {
        "scheduler.task_id": task_id,
        "scheduler.queue": "default",
        "scheduler.attempt": 1,
        "http.response.status_code": 503,
        "scheduler.outcome": "failed",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["scheduler.attempt"] == 2
    assert second.attributes["scheduler.outcome"] == "resolved"
    assert second.status.status_code is StatusCode.UNSET
    # Never a secret, nor the URL.
    text = repr([dict(s.attributes) for s in spans]) + repr([s.status for s in spans])
    assert "s3cret" not in text and "/traced" not in text


def test_a_task_without_traceparent_starts_its_own_trace(
    client, dispatcher, receiver, exporter
) -> None:
    receiver.behave("/plain", statuses=[200])
    enqueue(client, receiver.url("/plain"))
    dispatcher.tick()
    [attempt] = [s for s in exporter.get_finished_spans() if s.name == ATTEMPT_SPAN]
    assert attempt.parent is None
    assert attempt.context.trace_id != TRACE_ID


def test_an_array_enqueue_is_a_span_per_created_task(client, exporter) -> None:
    body = [{"webhookUrl": "http://127.0.0.1:9/x", "idempotencyKey": f"k{i}"} for i in range(3)]
    client.post("/api/v1/tasks", json=body)
    client.post("/api/v1/tasks", json=body)  # idempotent repeats: nothing created
    assert len([s for s in exporter.get_finished_spans() if s.name == ENQUEUE_SPAN]) == 3


def test_a_failing_enqueue_observer_does_not_fail_the_enqueue(plugins, client, caplog) -> None:
    class Broken:
        from scheduler_core import hookimpl

        @hookimpl
        def scheduler_task_enqueued(self, task, traceparent):
            raise RuntimeError(f"boom {task.id}")

    plugins.register(Broken())
    with caplog.at_level(logging.WARNING):
        response = client.post("/api/v1/tasks", json={"webhookUrl": "http://127.0.0.1:9/x"})
    assert response.status_code == 201
    assert "RuntimeError" in caplog.text and "boom" not in caplog.text


def test_scheduler_otel_registers_the_observer(settings: Settings, store) -> None:
    enabled = PluginManager(replace(settings, otel=True))
    assert enabled.get_plugin(OTEL_NAME) is not None
    app = create_app(settings, store=store, plugins=enabled, test_config={"TESTING": True})
    listed = app.test_client().get("/api/v1/plugins").json["plugins"]
    [row] = [p for p in listed if p["name"] == OTEL_NAME]
    assert row["builtin"] is True
    assert row["hooks"] == ["scheduler_run_attempt", "scheduler_task_enqueued"]


def test_off_by_default(settings: Settings, monkeypatch) -> None:
    monkeypatch.delenv("SCHEDULER_OTEL", raising=False)
    assert Settings.from_env(settings.database_url).otel is False
    assert PluginManager(settings).get_plugin(OTEL_NAME) is None
    monkeypatch.setenv("SCHEDULER_OTEL", "1")
    assert Settings.from_env(settings.database_url).otel is True


def test_without_the_extra_nothing_loads_and_it_says_why(settings: Settings, monkeypatch, caplog):
    # As if opentelemetry were not installed: importing the plugin fails.
    monkeypatch.setitem(sys.modules, OTEL_NAME, None)
    with caplog.at_level(logging.WARNING):
        plugins = PluginManager(replace(settings, otel=True))
    assert plugins.get_plugin(OTEL_NAME) is None
    assert "pip install 'scheduler-core[otel]'" in caplog.text
