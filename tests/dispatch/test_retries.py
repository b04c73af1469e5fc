"""Failed attempts: the retry budget, the backoff between tries, Retry-After, going stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, enqueue_many, ms_between, task, ts
from tests.support.database import TestDatabase
from tests.support.waiting import wait_until


def _wait_due(db: TestDatabase, task_json: dict) -> None:
    due = ts(task_json["nextAttemptAt"])
    wait_until(lambda: db.now() >= due, timeout=15, message="for the task to be due")


def _retry_delay_ms(client, task_id: str) -> float:
    """nextAttemptAt minus the end of the latest attempt, by the database's timestamps."""
    current = task(client, task_id)
    last = attempts(client, task_id)[-1]
    return ms_between(last["finishedAt"], current["nextAttemptAt"])


def test_a_task_that_always_fails_goes_stale_after_max_retries(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"), maxRetries=2)
    for _ in range(6):
        dispatcher.tick()
    calls = receiver.calls("/down")
    assert [c.header("X-Scheduler-Attempt") for c in calls] == ["1", "2", "3"]
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["attempts"] == 3
    assert after["lastStatusCode"] == 500
    assert "500" in after["lastError"]
    assert after["resolvedAt"] is None
    assert [a["statusCode"] for a in attempts(client, created["id"])] == [500, 500, 500]


def test_the_task_override_beats_the_config(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0, max_retries=5)
    receiver.behave("/down", statuses=[503])
    created = enqueue(client, receiver.url("/down"), maxRetries=0)
    dispatcher.tick()
    dispatcher.tick()
    assert len(receiver.calls("/down")) == 1
    assert task(client, created["id"])["status"] == "stale"


def test_config_max_retries_is_read_at_each_failure(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0, max_retries=1)
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"))
    assert created["maxRetries"] is None

    dispatcher.tick()  # attempt 1 of 2
    assert task(client, created["id"])["status"] == "pending"
    set_config(store, max_retries=3)
    dispatcher.tick()  # attempt 2: would have been the last, but the budget grew
    assert task(client, created["id"])["status"] == "pending"
    set_config(store, max_retries=2)
    dispatcher.tick()  # attempt 3 of 3
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["attempts"] == 3
    dispatcher.tick()
    assert len(receiver.calls("/down")) == 3


def test_retrying_a_stale_task_grants_a_fresh_budget_and_keeps_counting(
    client, dispatcher, receiver, store
):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/down", statuses=[500, 500, 500, 200])
    created = enqueue(client, receiver.url("/down"), maxRetries=1)
    for _ in range(3):
        dispatcher.tick()
    assert task(client, created["id"])["status"] == "stale"
    assert len(receiver.calls("/down")) == 2

    assert client.post(f"/api/v1/tasks/{created['id']}/retry").status_code == 200
    for _ in range(3):
        dispatcher.tick()
    calls = receiver.calls("/down")
    assert [c.header("X-Scheduler-Attempt") for c in calls] == ["1", "2", "3", "4"]
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["attempts"] == 4
    assert [a["attempt"] for a in attempts(client, created["id"])] == [1, 2, 3, 4]


def test_backoff_doubles_and_is_capped(client, dispatcher, receiver, store, db):
    set_config(store, retry_backoff_ms=300, retry_backoff_max_ms=700)
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"))

    delays = []
    for _ in range(3):
        _wait_due(db, task(client, created["id"]))
        dispatcher.tick()
        delays.append(_retry_delay_ms(client, created["id"]))
    assert len(receiver.calls("/down")) == 3
    for measured, expected in zip(delays, [300, 600, 700], strict=True):
        assert expected - 5 <= measured <= expected + 50, delays


def test_a_failed_task_is_not_claimed_before_its_next_attempt(
    client, dispatcher, receiver, store, db
):
    set_config(store, retry_backoff_ms=30_000)
    receiver.behave("/down", statuses=[500, 200])
    created = enqueue(client, receiver.url("/down"))
    dispatcher.tick()
    failed = task(client, created["id"])
    assert db.now() < ts(failed["nextAttemptAt"])

    dispatcher.tick()
    dispatcher.tick()
    assert len(receiver.calls("/down")) == 1
    assert task(client, created["id"])["attempts"] == 1

    # Bring the retry forward in the database: now it is due and goes out.
    db.make_due(created["id"])
    dispatcher.tick()
    assert len(receiver.calls("/down")) == 2
    assert task(client, created["id"])["status"] == "resolved"


def _http_date_in(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured_on_429_and_503(
    client, dispatcher, receiver, store, status
):
    set_config(store, retry_backoff_ms=100)
    receiver.behave("/busy", statuses=[status], headers={"Retry-After": "2"})
    created = enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    assert task(client, created["id"])["lastStatusCode"] == status
    assert 1995 <= _retry_delay_ms(client, created["id"]) <= 2050


def test_retry_after_http_date_is_honoured(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=100)
    receiver.behave("/busy", statuses=[503], headers={"Retry-After": _http_date_in(4)})
    created = enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    # An HTTP date has whole seconds, and some of them passed on the way.
    assert 1500 <= _retry_delay_ms(client, created["id"]) <= 4050


def test_retry_after_is_capped(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=100, retry_backoff_max_ms=1500)
    receiver.behave("/busy", statuses=[429], headers={"Retry-After": "3600"})
    created = enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    assert 1495 <= _retry_delay_ms(client, created["id"]) <= 1550


def test_retry_after_on_500_is_ignored(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=300)
    receiver.behave("/broken", statuses=[500], headers={"Retry-After": "20"})
    created = enqueue(client, receiver.url("/broken"))
    dispatcher.tick()
    assert 295 <= _retry_delay_ms(client, created["id"]) <= 350


def test_success_after_failures_resolves_and_clears_the_error(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/flaky", statuses=[500, 502, 200])
    created = enqueue(client, receiver.url("/flaky"))
    dispatcher.tick()
    dispatcher.tick()
    failing = task(client, created["id"])
    assert failing["lastStatusCode"] == 502 and "502" in failing["lastError"]
    assert failing["resolvedAt"] is None
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["attempts"] == 3
    assert after["lastError"] is None
    assert after["lastStatusCode"] == 200
    assert after["resolvedAt"] is not None
    assert ts(after["resolvedAt"]) >= ts(failing["updatedAt"])
    history = attempts(client, created["id"])
    assert [(a["attempt"], a["statusCode"]) for a in history] == [(1, 500), (2, 502), (3, 200)]
    assert history[-1]["error"] is None
    dispatcher.tick()
    assert len(receiver.calls("/flaky")) == 3


def test_a_tick_records_each_outcome_at_one_instant(client, dispatcher, receiver, store):
    """A failed attempt's end, the task's update and its next attempt (no backoff) are one
    moment by the database clock, however many outcomes the tick records."""
    set_config(store, retry_backoff_ms=0, select_size=100)
    receiver.behave("/down", statuses=[500])
    created = enqueue_many(client, [{"webhookUrl": receiver.url("/down")} for _ in range(100)])
    dispatcher.tick()
    assert len(receiver.calls("/down")) == 100
    for item in created:
        after = task(client, item["id"])
        [attempt] = attempts(client, item["id"])
        assert after["status"] == "pending"
        assert attempt["finishedAt"] == after["updatedAt"] == after["nextAttemptAt"], item
        assert ts(attempt["startedAt"]) <= ts(attempt["finishedAt"])


def test_max_retries_changed_while_an_attempt_runs_applies_to_its_failure(
    client, dispatcher, receiver, store
):
    """SPEC "Precise answers": the config's max_retries is read at each failure, not when
    the attempt was claimed."""
    set_config(store, retry_backoff_ms=0, http_callback_timeout_ms=10_000, max_retries=5)
    receiver.behave("/slow-fail", statuses=[500], delay=1.5)
    created = enqueue(client, receiver.url("/slow-fail"))
    dispatcher.start()
    try:
        receiver.wait_for(1, "/slow-fail")
        set_config(store, max_retries=0)  # while the attempt is in flight
        wait_until(lambda: task(client, created["id"])["status"] != "running", timeout=15)
    finally:
        dispatcher.stop(wait=True)
    after = task(client, created["id"])
    assert (after["status"], after["attempts"]) == ("stale", 1)
    assert len(receiver.calls("/slow-fail")) == 1
