"""A 202 with Scheduler-Async: the task waits, running, for its one-time completion URL
(SPEC "Delivery rules"). The URLs are called as a receiver would, through the app."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from scheduler_core.api import create_app
from scheduler_core.completion import COMPLETION_PATH, CompletionTokens
from scheduler_core.models import DeliveryOutcome, RecordedOutcome
from scheduler_core.plugin_manager import PluginManager
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task
from tests.support.database import TestDatabase

ASYNC = {"Scheduler-Async": "60"}


def _urls(receiver, path: str, attempt: int = 1) -> tuple[str, str]:
    """The completion URLs the callback of `attempt` carried, as paths on the server."""
    call = receiver.calls(path)[attempt - 1]
    assert call.header("X-Scheduler-Attempt") == str(attempt)
    complete = call.header("X-Scheduler-Complete-Url")
    fail = call.header("X-Scheduler-Fail-Url")
    assert complete is not None and fail is not None
    return urlsplit(complete).path, urlsplit(fail).path


def _awaiting(client, dispatcher, receiver, path="/job", **fields) -> dict:
    receiver.behave(path, statuses=[202], headers=ASYNC)
    created = enqueue(client, receiver.url(path), **fields)
    dispatcher.tick()
    return created


def _expire(db: TestDatabase, task_id: str) -> None:
    """As if the attempt's Scheduler-Async timeout had passed."""
    db.sql(
        postgresql="UPDATE scheduler_attempts SET async_deadline = now() - interval '1 second'"
        " WHERE task_id = %s AND async_deadline IS NOT NULL",
        sqlite="UPDATE scheduler_attempts SET async_deadline = async_deadline - 61000000"
        " WHERE task_id = %s AND async_deadline IS NOT NULL",
        params=(task_id,),
    )
    db.expire_lease(task_id)


def test_every_callback_carries_its_completion_urls(client, dispatcher, receiver, settings):
    enqueue(client, receiver.url("/hook"))
    dispatcher.tick()
    [call] = receiver.calls("/hook")
    complete = call.header("X-Scheduler-Complete-Url")
    fail = call.header("X-Scheduler-Fail-Url")
    assert complete.startswith(f"{settings.public_url}{COMPLETION_PATH}/complete/")
    assert fail.startswith(f"{settings.public_url}{COMPLETION_PATH}/fail/")
    names = list(call.headers)
    assert names.index("X-Scheduler-Attempt") < names.index("X-Scheduler-Complete-Url")


def test_a_202_with_scheduler_async_keeps_the_task_running_until_complete(
    client, dispatcher, receiver
):
    created = _awaiting(client, dispatcher, receiver)
    waiting = task(client, created["id"])
    assert waiting["status"] == "running"
    assert waiting["lastStatusCode"] == 202
    [attempt] = attempts(client, created["id"])
    assert attempt["statusCode"] == 202
    assert attempt["outcome"] is None and attempt["finishedAt"] is None
    dispatcher.tick()  # nothing to do: it is not delivered again
    assert len(receiver.calls("/job")) == 1

    complete, _ = _urls(receiver, "/job")
    answer = client.post(complete)
    assert answer.status_code == 200, answer.json
    assert answer.json == {
        "taskId": created["id"],
        "attempt": 1,
        "outcome": "resolved",
        "status": "resolved",
    }
    done = task(client, created["id"])
    assert done["status"] == "resolved" and done["resolvedAt"] is not None
    [attempt] = attempts(client, created["id"])
    assert attempt["outcome"] == "resolved" and attempt["finishedAt"] is not None
    assert attempt["durationMs"] >= 0


def test_a_completion_url_is_one_time(client, dispatcher, receiver):
    created = _awaiting(client, dispatcher, receiver)
    complete, fail = _urls(receiver, "/job")
    assert client.post(complete).status_code == 200
    again = client.post(complete)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "conflict"
    assert client.post(fail).status_code == 409
    assert task(client, created["id"])["status"] == "resolved"


def test_fail_retries_as_usual_then_stale_when_the_budget_is_spent(
    client, dispatcher, receiver, store
):
    set_config(store, retry_backoff_ms=0)
    created = _awaiting(client, dispatcher, receiver, maxRetries=1)
    _, fail = _urls(receiver, "/job")
    answer = client.post(fail, json={"error": "disk full\n on worker 3", "retryAfterSeconds": 0})
    assert answer.status_code == 200, answer.json
    assert answer.json["outcome"] == "failed" and answer.json["status"] == "pending"
    failed = task(client, created["id"])
    assert failed["status"] == "pending"
    assert failed["lastError"] == "disk full on worker 3"
    assert attempts(client, created["id"])[0]["outcome"] == "failed"

    dispatcher.tick()  # the retry: attempt 2, with URLs of its own
    assert task(client, created["id"])["status"] == "running"
    old_complete, _ = _urls(receiver, "/job", 1)
    stale_try = client.post(old_complete)
    assert stale_try.status_code == 409  # attempt 1's URL no longer counts

    _, fail = _urls(receiver, "/job", 2)
    assert client.post(fail).json["status"] == "stale"
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["lastError"] == "async: the receiver reported a failure"
    assert [a["outcome"] for a in attempts(client, created["id"])] == ["failed", "failed"]


def test_retry_after_seconds_of_a_fail_is_honoured_and_capped(
    client, dispatcher, receiver, store, db
):
    set_config(store, retry_backoff_ms=0, retry_backoff_max_ms=10_000)
    created = _awaiting(client, dispatcher, receiver)
    _, fail = _urls(receiver, "/job")
    assert client.post(fail, json={"retryAfterSeconds": 3600}).status_code == 200
    after = task(client, created["id"])
    wait_s = (datetime.fromisoformat(after["nextAttemptAt"]) - db.now()).total_seconds()
    assert 8 <= wait_s <= 10.5


def test_a_fail_body_is_validated_field_by_field(client, dispatcher, receiver):
    created = _awaiting(client, dispatcher, receiver)
    _, fail = _urls(receiver, "/job")
    answer = client.post(fail, json={"error": 5, "retryAfterSeconds": -1, "extra": 1})
    assert answer.status_code == 400
    assert set(answer.json["error"]["details"]) == {"error", "retryAfterSeconds", "extra"}
    assert client.post(fail, data=b"{nope").status_code == 400
    assert task(client, created["id"])["status"] == "running"  # nothing happened


def test_silence_until_the_timeout_is_a_failed_attempt(client, dispatcher, receiver, store, db):
    set_config(store, retry_backoff_ms=0)
    created = _awaiting(client, dispatcher, receiver, maxRetries=0)
    complete, _ = _urls(receiver, "/job")
    _expire(db, created["id"])
    gone = client.post(complete)
    assert gone.status_code == 410
    assert gone.json["error"]["code"] == "gone"
    dispatcher.tick()  # the reaper ends the wait
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["lastError"] == "async: no completion within 60 s"
    [attempt] = attempts(client, created["id"])
    assert attempt["outcome"] == "failed"  # not lost
    assert client.post(complete).status_code == 410  # still gone, after the reaper too
    text = client.get("/metrics").get_data(as_text=True)
    assert 'scheduler_attempts_total{outcome="failed",queue="default"} 1.0' in text
    assert 'scheduler_attempts_total{outcome="lost",queue="default"} 0.0' in text


def test_a_forged_or_swapped_token_is_404(client, dispatcher, receiver):
    created = _awaiting(client, dispatcher, receiver)
    complete, fail = _urls(receiver, "/job")
    token = complete.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.post(f"{COMPLETION_PATH}/complete/{forged}").status_code == 404
    fail_token = fail.rsplit("/", 1)[1]
    swapped = client.post(f"{COMPLETION_PATH}/complete/{fail_token}")
    assert swapped.status_code == 404
    assert swapped.json["error"]["code"] == "not_found"
    assert "Unknown" in swapped.json["error"]["message"]
    assert task(client, created["id"])["status"] == "running"


def test_completion_urls_need_no_api_key(settings, store, receiver, dispatcher):
    locked = replace(settings, api_keys=("k1",))
    app = create_app(
        locked, store=store, plugins=PluginManager(locked), test_config={"TESTING": True}
    )
    client = app.test_client()
    receiver.behave("/job", statuses=[202], headers=ASYNC)
    response = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/job")},
        headers={"Authorization": "Bearer k1"},
    )
    assert response.status_code == 201
    dispatcher.tick()
    complete, _ = _urls(receiver, "/job")
    assert client.post(complete).status_code == 200


@pytest.mark.parametrize("value", ["soon", "0", "86401", "1.5", ""])
def test_a_malformed_scheduler_async_is_a_plain_202(client, dispatcher, receiver, value):
    receiver.behave("/job", statuses=[202], headers={"Scheduler-Async": value})
    created = enqueue(client, receiver.url("/job"))
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"


def test_a_snooze_beats_async(client, dispatcher, receiver):
    receiver.behave("/job", statuses=[202], headers={**ASYNC, "Scheduler-Snooze": "60"})
    created = enqueue(client, receiver.url("/job"))
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "pending"
    assert attempts(client, created["id"])[0]["outcome"] == "snoozed"


def _post_together(app, path: str, barrier: threading.Barrier, statuses: list[int]) -> None:
    own = app.test_client()
    barrier.wait()
    statuses.append(own.post(path).status_code)


def test_concurrent_complete_and_fail_exactly_one_wins(app, dispatcher, receiver, store):
    receiver.behave("/job", statuses=[202], headers=ASYNC)
    client = app.test_client()
    created = [enqueue(client, receiver.url("/job")) for _ in range(5)]
    dispatcher.tick()
    calls = {c.header("X-Scheduler-Task-Id"): c for c in receiver.calls("/job")}
    for item in created:
        call = calls[item["id"]]
        paths = [
            urlsplit(call.header(h)).path
            for h in ("X-Scheduler-Complete-Url", "X-Scheduler-Fail-Url")
        ]
        barrier = threading.Barrier(len(paths))
        statuses: list[int] = []
        threads = [
            threading.Thread(target=_post_together, args=(app, p, barrier, statuses)) for p in paths
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [200, 409]
        assert task(client, item["id"])["status"] in {"resolved", "pending"}
        assert len([a for a in attempts(client, item["id"]) if a["outcome"]]) == 1


def test_a_completion_before_the_202_arrives_resolves_and_the_202_changes_nothing(
    client, dispatcher, receiver, store
):
    # The receiver finishes so fast that its POST to the complete URL overtakes its own
    # 202: the completion counts, the late 202 is ignored.
    created = enqueue(client, receiver.url("/job"))
    [claimed] = store.claim_queue("default", 1, 30_000).tasks
    complete, _ = CompletionTokens(store, "http://x").urls(claimed.id, claimed.attempt)
    assert client.post(urlsplit(complete).path).status_code == 200
    store.record_outcomes(
        [
            RecordedOutcome(
                claimed.id, 1, DeliveryOutcome(ok=True, status_code=202, async_timeout_s=60), None
            )
        ]
    )
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert attempts(client, created["id"])[0]["outcome"] == "resolved"


def test_a_task_waiting_for_its_completion_url_holds_no_place_in_flight(
    client, dispatcher, receiver, store
):
    # max_concurrent_dispatches counts callbacks in flight; a task waiting (up to a day)
    # for its completion URL holds none, so it must not stall the queue behind it.
    set_config(store, max_concurrent_dispatches=1)
    waiting = _awaiting(client, dispatcher, receiver, "/long")
    assert task(client, waiting["id"])["status"] == "running"
    quick = enqueue(client, receiver.url("/quick"))
    dispatcher.tick()
    assert task(client, quick["id"])["status"] == "resolved"


def test_a_fail_body_never_shows_a_secret(client, dispatcher, receiver):
    # The receiver's error text may quote what it was sent: the task's webhookAuth, or a
    # completion URL (its token completes the attempt).
    created = _awaiting(client, dispatcher, receiver, webhookAuth="Bearer TOPSECRET-XYZ")
    complete, fail = _urls(receiver, "/job")
    error = f"auth was Bearer TOPSECRET-XYZ; finish at http://h{complete}"
    assert client.post(fail, json={"error": error}).status_code == 200
    shown = task(client, created["id"])["lastError"]
    history = attempts(client, created["id"])[0]["error"]
    for text in (shown, history):
        assert "TOPSECRET" not in text
        assert complete.rsplit("/", 1)[1] not in text
        assert "[redacted]" in text


def test_a_fail_after_not_after_ends_the_task_stale_at_once(client, dispatcher, receiver, db):
    from datetime import UTC, timedelta

    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    created = _awaiting(client, dispatcher, receiver, notAfter=soon, maxRetries=5)
    db.sql(
        postgresql="UPDATE scheduler_tasks SET not_after = now() - interval '1 second'"
        " WHERE id = %s",
        sqlite="UPDATE scheduler_tasks SET not_after = not_after - 60000000 WHERE id = %s",
        params=(created["id"],),
    )
    _, fail = _urls(receiver, "/job")
    answer = client.post(fail, json={"error": "out of disk", "retryAfterSeconds": 1})
    assert answer.status_code == 200 and answer.json["status"] == "stale"
    assert task(client, created["id"])["lastError"] == "deadline passed: out of disk"


def test_a_completion_through_its_url_is_logged(client, dispatcher, receiver, caplog):
    created = _awaiting(client, dispatcher, receiver)
    complete, _ = _urls(receiver, "/job")
    with caplog.at_level("INFO", logger="scheduler_core.api.completion_routes"):
        assert client.post(complete).status_code == 200
    assert f"task={created['id']} attempt=1 completed through its completion URL: resolved" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_refused_completion_url_is_logged_without_its_token(client, dispatcher, receiver, caplog):
    created = _awaiting(client, dispatcher, receiver)
    complete, _ = _urls(receiver, "/job")
    assert client.post(complete).status_code == 200
    with caplog.at_level("INFO", logger="scheduler_core.api.completion_routes"):
        assert client.post(complete).status_code == 409
        assert client.post(complete[:-3] + "xyz").status_code == 404
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith(f"task={created['id']} attempt=1 complete URL refused (409)")
        for line in lines
    ), lines
    assert "a complete URL that is not genuine was refused (404)" in lines
    assert not any(complete.rsplit("/", 1)[1] in line for line in lines)
