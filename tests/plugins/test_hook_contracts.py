"""What docs/PLUGINS.md promises when a plugin fails: each hook's "Errors"."""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import datetime
from pathlib import Path

import pytest

from scheduler_core import hookimpl
from scheduler_core.models import (
    ClaimedTask,
    DeliveryReport,
    RecordedOutcome,
    RetryDecision,
    TaskFilter,
)
from scheduler_core.testing import Receiver, RequestFailed, Scheduler

LATER = "2099-01-01T00:00:00Z"


class Failing:
    """fail:// URLs, every attempt failed."""

    @hookimpl
    def scheduler_delivery_schemes(self) -> list[str]:
        return ["fail"]

    @hookimpl
    def scheduler_deliver(self) -> DeliveryReport:
        return DeliveryReport.failed("nope")


class BrokenPolicy:
    @hookimpl
    def scheduler_retry_decision(self) -> RetryDecision:
        raise ValueError("policy bug")


def ms_between(earlier: str, later: str) -> float:
    delta = datetime.fromisoformat(later) - datetime.fromisoformat(earlier)
    return delta.total_seconds() * 1000


def test_a_retry_plugin_that_raises_leaves_the_decision_to_the_builtin_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Scheduler(Failing(), BrokenPolicy()) as scheduler:
        scheduler.configure(retry_backoff_ms=60_000)
        task = scheduler.enqueue("fail://broker")

        scheduler.tick()  # returns: the delivery thread did not die with the plugin

        shown = scheduler.task(task["id"])
        [attempt] = scheduler.attempts(task["id"])
        assert (shown["status"], shown["attempts"], shown["lastError"]) == ("pending", 1, "nope")
        assert round(ms_between(attempt["finishedAt"], shown["nextAttemptAt"]), -3) == 60_000
    assert "retry plugin error: ValueError('policy bug')" in caplog.text


def test_a_retry_plugin_that_answers_none_leaves_the_decision_to_the_next() -> None:
    class NoOpinion:
        @hookimpl
        def scheduler_retry_decision(self) -> None:
            return None

    with Scheduler(Failing(), NoOpinion()) as scheduler:
        scheduler.configure(max_retries=1, retry_backoff_ms=0)
        task = scheduler.enqueue("fail://broker")

        scheduler.deliver_due()

        assert scheduler.task(task["id"])["status"] == "stale"  # the built-in retried once
        assert len(scheduler.attempts(task["id"])) == 2


def test_an_observer_that_raises_fails_the_attempt_and_the_retry_policy_decides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenObserver:
        @hookimpl(wrapper=True)
        def scheduler_run_attempt(
            self, task: ClaimedTask
        ) -> Generator[None, RecordedOutcome, RecordedOutcome]:
            yield
            raise RuntimeError("metrics backend down")

    with Receiver() as receiver, Scheduler(BrokenObserver()) as scheduler:
        task = scheduler.enqueue(receiver.url("/hook"))

        with caplog.at_level(logging.ERROR):
            scheduler.tick()

        shown = scheduler.task(task["id"])
        assert shown["status"] == "pending"
        assert shown["lastError"] == "plugin error: RuntimeError('metrics backend down')"
        assert len(receiver.calls("/hook")) == 1  # sent before the wrapper raised
    assert "failed inside a plugin" in caplog.text


def test_an_auth_plugin_that_raises_answers_500_and_does_nothing() -> None:
    class BrokenAuth:
        @hookimpl
        def scheduler_authorize(self) -> bool:
            raise KeyError("session store")

    with Scheduler(BrokenAuth()) as scheduler:
        response = scheduler.request(
            "POST", "/api/v1/tasks", json={"webhookUrl": "http://127.0.0.1:9/", "executeAt": LATER}
        )

        assert response.status_code == 500
        assert response.get_json()["error"]["code"] == "internal_error"
        assert "session store" not in response.get_data(as_text=True)
        assert scheduler.store.list_tasks(TaskFilter(), 10, None) == ([], None)
        assert scheduler.client.get("/healthz").status_code == 200  # not under /api/


def test_an_auth_plugin_returning_true_lets_a_request_through_without_the_api_key() -> None:
    class OpenReads:
        @hookimpl
        def scheduler_authorize(self, request):  # type: ignore[no-untyped-def]
            return True if request.method == "GET" else None

    with Scheduler(OpenReads(), api_keys=("k1",)) as scheduler:
        assert scheduler.client.get("/api/v1/plugins").status_code == 200
        posted = scheduler.client.post("/api/v1/tasks", json={"webhookUrl": "http://x.test/"})
        assert posted.status_code == 401  # None: the API keys decide


def test_a_schemes_plugin_that_raises_fails_enqueueing_with_500() -> None:
    class BrokenSchemes:
        @hookimpl
        def scheduler_delivery_schemes(self) -> list[str]:
            raise OSError("config file missing")

    with Scheduler(BrokenSchemes()) as scheduler, pytest.raises(RequestFailed) as failed:
        scheduler.enqueue("http://127.0.0.1:9/", executeAt=LATER)

    assert (failed.value.status, failed.value.code) == (500, "internal_error")


def test_an_uninstalled_transport_fails_its_tasks_attempts_saying_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scheduler.db'}"
    with Scheduler(Failing(), database_url=url) as first:
        task = first.enqueue("fail://broker")

    with Scheduler(database_url=url) as second:  # the plugin that claimed fail:// is gone
        second.deliver_due()

        assert second.task(task["id"])["lastError"] == "no delivery plugin handles this URL scheme"
