"""Scheduler-Snooze: the receiver asks to be called later, on any answer, without
spending a retry (SPEC "Delivery rules")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, ms_between, task
from tests.support.database import TestDatabase


def _snooze_delay_ms(client, task_id: str) -> float:
    """nextAttemptAt minus the end of the latest attempt, by the database's timestamps."""
    return ms_between(
        attempts(client, task_id)[-1]["finishedAt"], task(client, task_id)["nextAttemptAt"]
    )


def test_a_snooze_in_delta_seconds_puts_the_task_back_to_pending_then(client, dispatcher, receiver):
    # A 200 with a snooze: the snooze wins over resolving.
    receiver.behave("/busy", statuses=[200], headers={"Scheduler-Snooze": "30"})
    created = enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["attempts"] == 1
    assert after["lastStatusCode"] == 200
    assert after["lastError"] == "HTTP 200: snoozed for 30000 ms by Scheduler-Snooze"
    assert 29_000 <= _snooze_delay_ms(client, created["id"]) <= 31_000
    [attempt] = attempts(client, created["id"])
    assert attempt["outcome"] == "snoozed"
    assert attempt["statusCode"] == 200
    dispatcher.tick()  # not due yet: the receiver is not called again
    assert len(receiver.calls("/busy")) == 1


def test_a_snooze_as_an_http_date_is_honoured(client, dispatcher, receiver):
    when = datetime.now(UTC) + timedelta(seconds=60)
    receiver.behave(
        "/busy", statuses=[503], headers={"Scheduler-Snooze": format_datetime(when, usegmt=True)}
    )
    created = enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "pending"
    # Measured from the answer's Date header (whole seconds): within a couple of seconds.
    assert 57_000 <= _snooze_delay_ms(client, created["id"]) <= 62_000
    assert attempts(client, created["id"])[0]["outcome"] == "snoozed"


def test_a_snooze_is_capped_at_retry_backoff_max_ms(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_max_ms=5000)
    receiver.behave("/busy", statuses=[200], headers={"Scheduler-Snooze": "86400"})
    created = enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    assert 4_000 <= _snooze_delay_ms(client, created["id"]) <= 6_000
    # lastError says the delay the task was given, not the one asked for.
    assert task(client, created["id"])["lastError"] == (
        "HTTP 200: snoozed for 5000 ms by Scheduler-Snooze"
    )


def test_a_malformed_snooze_is_ignored_and_the_answer_judged_as_usual(client, dispatcher, receiver):
    receiver.behave("/ok", statuses=[200], headers={"Scheduler-Snooze": "soon"})
    created = enqueue(client, receiver.url("/ok"))
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"
    assert attempts(client, created["id"])[0]["outcome"] == "resolved"


def test_snoozes_spend_no_retry(client, dispatcher, receiver, store, db: TestDatabase):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/busy", statuses=[503], headers={"Scheduler-Snooze": "0"})
    created = enqueue(client, receiver.url("/busy"), maxRetries=0)
    for _ in range(3):
        dispatcher.tick()
    assert task(client, created["id"])["status"] == "pending"
    receiver.behave("/busy", statuses=[200])
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["attempts"] == 4
    assert [a["outcome"] for a in attempts(client, created["id"])] == [
        "snoozed",
        "snoozed",
        "snoozed",
        "resolved",
    ]
    assert [c.header("X-Scheduler-Attempt") for c in receiver.calls("/busy")] == [
        "1",
        "2",
        "3",
        "4",
    ]


def test_a_failure_after_snoozes_still_has_its_whole_budget(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/busy", statuses=[200], headers={"Scheduler-Snooze": "0"})
    created = enqueue(client, receiver.url("/busy"), maxRetries=1)
    dispatcher.tick()
    dispatcher.tick()
    receiver.behave("/busy", statuses=[500])
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "pending"  # 1 failure of 2 allowed
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert [a["outcome"] for a in attempts(client, created["id"])] == [
        "snoozed",
        "snoozed",
        "failed",
        "failed",
    ]


def test_the_101st_snooze_in_a_row_is_a_failure(client, dispatcher, receiver, store, db):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/busy", statuses=[200], headers={"Scheduler-Snooze": "0"})
    created = enqueue(client, receiver.url("/busy"), maxRetries=0)
    dispatcher.tick()
    # As if 99 snoozes had come in a row before this one: the 100th is still a snooze.
    db.execute("UPDATE scheduler_tasks SET snoozes_in_row = 99 WHERE id = %s", (created["id"],))
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "pending"
    [(in_row,)] = db.execute(
        "SELECT snoozes_in_row FROM scheduler_tasks WHERE id = %s", (created["id"],)
    )
    assert in_row == 100
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "stale"  # maxRetries 0: the one failure ends it
    assert after["lastError"] == "snoozed 100 times in a row"
    assert after["lastStatusCode"] == 200
    assert [a["outcome"] for a in attempts(client, created["id"])] == [
        "snoozed",
        "snoozed",
        "failed",
    ]
    [(in_row,)] = db.execute(
        "SELECT snoozes_in_row FROM scheduler_tasks WHERE id = %s", (created["id"],)
    )
    assert in_row == 0


def test_snoozed_attempts_are_counted_as_snoozed_in_the_metrics(
    client, dispatcher, receiver, plugins
):
    receiver.behave("/busy", statuses=[200], headers={"Scheduler-Snooze": "60"})
    enqueue(client, receiver.url("/busy"))
    dispatcher.tick()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'scheduler_attempts_total{outcome="snoozed",queue="default"} 1.0' in text


def test_the_delivery_log_says_snoozed_and_waiting_not_failed_or_resolved(
    client, dispatcher, receiver, caplog
):
    # An operator reading the log must not take a snooze for a failure, nor a 202 that
    # waits for its completion URL for a resolved task.
    receiver.behave("/busy", statuses=[503], headers={"Scheduler-Snooze": "30"})
    receiver.behave("/long", statuses=[202], headers={"Scheduler-Async": "600"})
    snoozed = enqueue(client, receiver.url("/busy"))
    waiting = enqueue(client, receiver.url("/long"))
    with caplog.at_level("INFO", logger="scheduler_core.delivery"):
        dispatcher.tick()
    lines = {r.getMessage().split()[0]: r.getMessage() for r in caplog.records}
    assert lines[f"task={snoozed['id']}"].endswith(
        "attempt=1 snoozed by the receiver (status 503): due again in 30000 ms"
    )
    assert lines[f"task={waiting['id']}"].endswith(
        "attempt=1 accepted (202, Scheduler-Async): waiting up to 600 s for its completion URL"
    )
    assert task(client, waiting["id"])["status"] == "running"
