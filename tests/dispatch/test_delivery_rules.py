"""The sender's delivery rules, against a real receiver: successCodes, staleCodes,
notAfter (at the claim and when retrying), and the traceparent every callback carries.
Both backends."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import scheduler_core
from scheduler_core.models import DeliveryReport, NewTask
from scheduler_core.runtime_config import RuntimeConfig
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task
from tests.support.waiting import wait_until

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_stale_code_ends_the_task_stale_after_one_attempt(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/gone", statuses=[410], body=b"no such order")
    created = enqueue(client, receiver.url("/gone"), maxRetries=5, staleCodes=[400, 404, 410])
    for _ in range(3):
        dispatcher.tick()
    assert len(receiver.calls("/gone")) == 1
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["attempts"] == 1
    assert after["lastStatusCode"] == 410
    assert after["lastError"].startswith("HTTP 410 (a staleCode: no retry)")
    assert "no such order" in after["lastError"]
    assert [a["outcome"] for a in attempts(client, created["id"])] == ["failed"]


def test_a_listed_success_code_resolves(client, dispatcher, receiver):
    receiver.behave("/dup", statuses=[409])
    created = enqueue(client, receiver.url("/dup"), successCodes=[200, 409])
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["successCodes"] == [200, 409]
    assert [a["statusCode"] for a in attempts(client, created["id"])] == [409]


def test_a_class_resolves_every_code_in_it(client, dispatcher, receiver):
    receiver.behave("/empty", statuses=[204])
    created = enqueue(client, receiver.url("/empty"), successCodes=["2XX"])
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["successCodes"] == ["2xx"]


def test_the_more_precise_rule_wins(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/conflict", statuses=[409])
    receiver.behave("/missing", statuses=[404])
    receiver.behave("/nothing", statuses=[204])
    rules = {"successCodes": [200, 409], "staleCodes": ["4xx"], "maxRetries": 3}
    conflict = enqueue(client, receiver.url("/conflict"), **rules)
    missing = enqueue(client, receiver.url("/missing"), **rules)
    nothing = enqueue(client, receiver.url("/nothing"), staleCodes=[204], maxRetries=3)
    dispatcher.tick()
    assert task(client, conflict["id"])["status"] == "resolved"  # 409 named: success
    assert task(client, missing["id"])["status"] == "stale"  # 404 only in "4xx": stale
    assert task(client, nothing["id"])["status"] == "stale"  # 204 named beats default 2xx


def test_by_default_a_404_is_retried(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/missing", statuses=[404, 200])
    created = enqueue(client, receiver.url("/missing"), maxRetries=3)
    assert created["successCodes"] is None and created["staleCodes"] is None
    dispatcher.tick()
    between = task(client, created["id"])
    assert between["status"] == "pending"
    assert between["lastStatusCode"] == 404
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"
    assert len(receiver.calls("/missing")) == 2


def test_a_code_outside_the_success_codes_fails(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/ok-only", statuses=[201])
    created = enqueue(client, receiver.url("/ok-only"), successCodes=[200], maxRetries=0)
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["lastStatusCode"] == 201


def test_a_deadline_passed_while_pending_is_never_called(client, dispatcher, receiver, db):
    receiver.behave("/late", statuses=[200])
    not_after = db.now() + timedelta(milliseconds=300)
    created = enqueue(client, receiver.url("/late"), notAfter=_iso(not_after))
    wait_until(lambda: db.now() > not_after, timeout=10, message="for notAfter to pass")
    dispatcher.tick()
    assert receiver.calls("/late") == []
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["lastError"] == "deadline passed"
    assert after["attempts"] == 0
    assert attempts(client, created["id"]) == []


def test_tasks_past_their_deadline_leave_room_for_the_others(client, dispatcher, receiver, db):
    # select_size 2 with three expired tasks ahead: the claim goes on past them, so the
    # live task is called in the same round.
    set_config(dispatcher.store, select_size=2)
    receiver.behave("/mixed", statuses=[200])
    not_after = db.now() + timedelta(milliseconds=200)
    expired = [
        enqueue(client, receiver.url("/mixed"), notAfter=_iso(not_after))["id"] for _ in range(3)
    ]
    wait_until(lambda: db.now() > not_after, timeout=10, message="for notAfter to pass")
    live = enqueue(client, receiver.url("/mixed"))
    dispatcher.tick()
    assert [c.header("X-Scheduler-Task-Id") for c in receiver.calls("/mixed")] == [live["id"]]
    assert {task(client, i)["status"] for i in expired} == {"stale"}


def test_a_retry_that_would_come_after_the_deadline_ends_stale(client, dispatcher, receiver, db):
    set_config(dispatcher.store, retry_backoff_ms=60_000, retry_backoff_max_ms=60_000)
    receiver.behave("/busy", statuses=[500])
    not_after = db.now() + timedelta(seconds=20)
    created = enqueue(client, receiver.url("/busy"), maxRetries=5, notAfter=_iso(not_after))
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["attempts"] == 1
    assert after["lastError"].startswith("deadline passed: HTTP 500")
    assert after["lastStatusCode"] == 500


def test_a_retry_before_the_deadline_goes_ahead(client, dispatcher, receiver, db, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/flaky", statuses=[500, 200])
    not_after = db.now() + timedelta(minutes=5)
    created = enqueue(client, receiver.url("/flaky"), notAfter=_iso(not_after))
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "pending"
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"


def test_the_traceparent_reaches_the_receiver_on_every_attempt(client, dispatcher, receiver, store):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/traced", statuses=[503, 200])
    response = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/traced"), "webhookAuth": "Bearer s3cret"},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 201
    dispatcher.tick()
    dispatcher.tick()
    calls = receiver.calls("/traced")
    assert [c.header("traceparent") for c in calls] == [TRACEPARENT, TRACEPARENT]
    assert [c.header("X-Scheduler-Attempt") for c in calls] == ["1", "2"]


def test_a_malformed_traceparent_is_ignored(client, dispatcher, receiver):
    receiver.behave("/untraced", statuses=[200])
    for bad in (
        TRACEPARENT.upper(),  # upper-case hex
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        TRACEPARENT + "-extra",  # version 00 has exactly four fields
        "not a traceparent",
    ):
        response = client.post(
            "/api/v1/tasks",
            json={"webhookUrl": receiver.url("/untraced")},
            headers={"traceparent": bad},
        )
        assert response.status_code == 201, bad
    dispatcher.tick()
    calls = receiver.calls("/untraced")
    assert len(calls) == 6
    assert all(c.header("traceparent") is None for c in calls)


def test_a_later_trace_context_version_is_kept_as_version_00(client, dispatcher, receiver):
    receiver.behave("/future", statuses=[200])
    response = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/future")},
        headers={"traceparent": "01" + TRACEPARENT[2:] + "-somethingnew"},
    )
    assert response.status_code == 201
    dispatcher.tick()
    [call] = receiver.calls("/future")
    assert call.header("traceparent") == TRACEPARENT


def test_an_array_enqueue_gives_every_task_the_traceparent(client, dispatcher, receiver):
    receiver.behave("/many", statuses=[200])
    response = client.post(
        "/api/v1/tasks",
        json=[{"webhookUrl": receiver.url("/many")} for _ in range(3)],
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 201
    dispatcher.tick()
    assert [c.header("traceparent") for c in receiver.calls("/many")] == [TRACEPARENT] * 3


class StatusScheme:
    """A transport for `queue://` that answers with the statuses given, one per attempt
    (None: a broker's confirm, no status)."""

    def __init__(self, statuses: list[int | None]) -> None:
        self.statuses = statuses
        self.sent: list = []

    @scheduler_core.hookimpl
    def scheduler_delivery_schemes(self):
        return ["queue"]

    @scheduler_core.hookimpl
    def scheduler_deliver(self, callback, deadline):
        if urlsplit(callback.url).scheme != "queue":
            return None
        self.sent.append(callback)
        status = self.statuses[min(len(self.sent), len(self.statuses)) - 1]
        if status is None:
            return DeliveryReport.accepted()
        return DeliveryReport.answered(status, {}, b"")


def test_a_transport_plugin_is_judged_by_the_same_rules(client, dispatcher, plugins, store):
    set_config(store, retry_backoff_ms=0)
    scheme = StatusScheme([410])
    plugins.register(scheme)
    stale = enqueue(client, "queue://broker/jobs", staleCodes=[410], maxRetries=3)
    dispatcher.tick()
    after = task(client, stale["id"])
    assert after["status"] == "stale" and after["attempts"] == 1
    assert "(a staleCode: no retry)" in after["lastError"]


def test_a_broker_confirm_resolves_whatever_the_success_codes(client, dispatcher, plugins):
    scheme = StatusScheme([None])
    plugins.register(scheme)
    created = enqueue(client, "queue://broker/jobs", successCodes=[299])
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"


def test_a_transport_plugin_gets_the_traceparent(client, dispatcher, plugins):
    scheme = StatusScheme([None])
    plugins.register(scheme)
    response = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": "queue://broker/jobs", "webhookAuth": "Bearer t"},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 201
    dispatcher.tick()
    [callback] = scheme.sent
    names = list(callback.headers)
    assert callback.headers["traceparent"] == TRACEPARENT
    # after X-Scheduler-Attempt, before Authorization (SPEC.md, "The callback")
    assert names.index("X-Scheduler-Attempt") < names.index("traceparent")
    assert names.index("traceparent") < names.index("Authorization")


def test_an_attempt_that_could_only_start_after_not_after_sends_nothing(store, plugins, receiver):
    # A claim made before notAfter, under load or at a queue's rate limit, may hand the
    # task over after it: the core sends no byte then, and the task is stale.
    [(created, _)] = store.enqueue(
        [
            NewTask(
                webhook_url=receiver.url("/late"), not_after=datetime.now(UTC) + timedelta(hours=1)
            )
        ]
    )
    [claimed] = store.claim_due(10, 60_000)
    claimed_long_ago = replace(  # as if the claim had returned 2 hours before the hand-over
        claimed, claimed_monotonic=time.monotonic() - 7200
    )
    plugins.use_store(store)
    recorded = plugins.run_attempt(claimed_long_ago, time.monotonic() + 5, RuntimeConfig())
    assert recorded.decision is not None and recorded.decision.is_stale
    assert recorded.outcome.error == "deadline passed (nothing sent)"
    store.record_outcomes([recorded])
    assert receiver.calls("/late") == []
    after = store.get(created.id)
    assert after is not None and after.status.value == "stale"
    assert after.last_error == "deadline passed (nothing sent)"


def test_a_call_still_running_at_not_after_is_cut_there(store, plugins, receiver):
    # The receiver takes longer than the time left before notAfter: the call is cut at
    # notAfter (no byte after it), and lastError says so rather than naming the callback
    # timeout.
    receiver.behave("/slow", delay=5)
    [(created, _)] = store.enqueue(
        [
            NewTask(
                webhook_url=receiver.url("/slow"),
                not_after=datetime.now(UTC) + timedelta(seconds=1),
            )
        ]
    )
    [claimed] = store.claim_due(10, 60_000)
    plugins.use_store(store)
    started = time.monotonic()
    recorded = plugins.run_attempt(claimed, time.monotonic() + 30, RuntimeConfig())
    assert time.monotonic() - started < 3
    assert recorded.decision is not None and recorded.decision.is_stale
    assert recorded.outcome.error is not None
    assert recorded.outcome.error.startswith("deadline passed: ")
    assert recorded.outcome.error.endswith("before notAfter"), recorded.outcome.error
