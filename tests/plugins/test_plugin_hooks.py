"""Plugins taking over the retry policy and delivery, as a third-party package would."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import scheduler_core
from scheduler_core.models import ClaimedTask, DeliveryOutcome, RecordedOutcome, RetryDecision
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, ms_between, task, timed_tick


class RetryAtOnce:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, int]] = []

    @scheduler_core.hookimpl
    def scheduler_retry_decision(self, task, outcome, config):
        self.seen.append((task.id, outcome.status_code, task.attempt))
        return RetryDecision(retry_in_ms=0)


class GiveUp:
    @scheduler_core.hookimpl
    def scheduler_retry_decision(self, task, outcome):
        return RetryDecision.stale()


class NoOpinion:
    def __init__(self) -> None:
        self.calls = 0

    @scheduler_core.hookimpl
    def scheduler_retry_decision(self, outcome):
        self.calls += 1
        return None


class TestScheme:
    """Delivers test:// URLs in-process. `answer` decides what each delivery comes to."""

    __test__ = False  # not a pytest test class

    def __init__(self, answer=None) -> None:
        self.delivered: list[tuple[ClaimedTask, float, float]] = []
        self.answer = answer or (lambda task: DeliveryOutcome(ok=True, duration_ms=1))

    @scheduler_core.hookimpl
    def scheduler_delivery_schemes(self):
        return ["test"]

    @scheduler_core.hookimpl
    def scheduler_deliver(self, task, deadline):
        if urlsplit(task.webhook_url).scheme != "test":
            return None
        self.delivered.append((task, deadline, time.monotonic()))
        return self.answer(task)


# -- retry policy -------------------------------------------------------------------


def test_a_retry_plugin_decides_when_to_try_again(client, dispatcher, receiver, store, plugins, db):
    set_config(store, retry_backoff_ms=3_600_000)  # the default policy would wait an hour
    policy = RetryAtOnce()
    plugins.register(policy)
    receiver.behave("/flaky", statuses=[503, 200], headers={"Retry-After": "600"})
    created = enqueue(client, receiver.url("/flaky"))

    dispatcher.tick()
    [last] = attempts(client, created["id"])
    assert ms_between(last["finishedAt"], task(client, created["id"])["nextAttemptAt"]) == 0
    # The task is due at once; its host stays blocked for the Retry-After (per-host
    # backpressure is the scheduler's, not the retry policy's): lift the block.
    [host] = store.list_hosts()
    assert 590 < host.blocked_s <= 600
    db.execute("DELETE FROM scheduler_hosts")
    dispatcher.tick()

    assert len(receiver.calls("/flaky")) == 2
    assert task(client, created["id"])["status"] == "resolved"
    assert policy.seen == [(created["id"], 503, 1)]


def test_a_retry_plugin_can_give_up_at_once(client, dispatcher, receiver, store, plugins):
    set_config(store, retry_backoff_ms=0, max_retries=5)
    plugins.register(GiveUp())
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"))
    dispatcher.tick()
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "stale"
    assert after["attempts"] == 1
    assert len(receiver.calls("/down")) == 1


def test_a_plugin_without_an_opinion_leaves_the_default_backoff(
    client, dispatcher, receiver, store, plugins
):
    set_config(store, retry_backoff_ms=250)
    shrug = NoOpinion()
    plugins.register(shrug)
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"))
    dispatcher.tick()
    [last] = attempts(client, created["id"])
    delay = ms_between(last["finishedAt"], task(client, created["id"])["nextAttemptAt"])
    assert 245 <= delay <= 300
    assert shrug.calls == 1


def test_the_retry_plugin_is_not_asked_once_the_budget_is_spent(
    client, dispatcher, receiver, store, plugins
):
    set_config(store, retry_backoff_ms=0)
    policy = RetryAtOnce()
    plugins.register(policy)
    receiver.behave("/down", statuses=[500])
    created = enqueue(client, receiver.url("/down"), maxRetries=1)
    for _ in range(4):
        dispatcher.tick()
    assert task(client, created["id"])["status"] == "stale"
    assert len(receiver.calls("/down")) == 2
    assert [attempt for _, _, attempt in policy.seen] == [1]


# -- delivery for another URL scheme ------------------------------------------------


def test_a_delivery_plugin_claims_its_own_scheme(client, dispatcher, receiver, store, plugins):
    refused = client.post("/api/v1/tasks", json={"webhookUrl": "test://x/queue"})
    assert refused.status_code == 400
    assert "webhookUrl" in refused.json["error"]["details"]

    set_config(store, http_callback_timeout_ms=3000)
    scheme = TestScheme()
    plugins.register(scheme)
    created = enqueue(
        client,
        "test://x/queue",
        webhookAuth="secret",
        payload={"n": 1},
        executeAt="2020-01-01T00:00:00Z",
    )
    web = enqueue(client, receiver.url("/web"))

    before = time.monotonic()
    dispatcher.tick()

    [(claimed, deadline, called_at)] = scheme.delivered
    assert claimed.id == created["id"]
    assert claimed.webhook_url == "test://x/queue"
    assert claimed.webhook_auth == "secret"
    assert claimed.payload_json == '{"n": 1}'
    assert claimed.attempt == 1
    assert claimed.execute_at.year == 2020
    assert before + 2.5 <= deadline <= called_at + 3.0
    assert task(client, created["id"])["status"] == "resolved"
    # http still goes over HTTP, untouched by the plugin
    [call] = receiver.wait_for(1, "/web")
    assert call.json()["taskId"] == web["id"]
    assert task(client, web["id"])["status"] == "resolved"


def test_a_delivery_plugins_failure_is_a_failed_attempt(client, dispatcher, store, plugins):
    set_config(store, retry_backoff_ms=0)
    scheme = TestScheme(
        lambda task: DeliveryOutcome(
            ok=task.attempt > 1, error=None if task.attempt > 1 else "queue full", duration_ms=3
        )
    )
    plugins.register(scheme)
    created = enqueue(client, "test://x/queue")
    dispatcher.tick()
    failed = task(client, created["id"])
    assert (failed["status"], failed["lastError"]) == ("pending", "queue full")
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"
    assert [a["error"] for a in attempts(client, created["id"])] == ["queue full", None]


def test_a_delivery_plugin_that_raises_fails_the_attempt_not_the_tick(
    client, dispatcher, receiver, store, plugins
):
    def explode(task):
        raise RuntimeError("broker is down")

    plugins.register(TestScheme(explode))
    created = enqueue(client, "test://x/queue")
    web = enqueue(client, receiver.url("/web"))
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert "broker is down" in after["lastError"]
    assert task(client, web["id"])["status"] == "resolved"


def test_a_delivery_plugin_that_ignores_its_deadline_cannot_hold_the_dispatcher(
    client, dispatcher, receiver, store, plugins
):
    set_config(store, http_callback_timeout_ms=300, select_size=1, retry_backoff_ms=0)
    release = threading.Event()

    def hang(task):
        release.wait(30)
        return DeliveryOutcome(ok=True)

    plugins.register(TestScheme(hang))
    try:
        stuck = enqueue(client, "test://x/stuck", maxRetries=0)
        wall = timed_tick(dispatcher)
        assert wall < 0.3 + 2.0, f"tick took {wall:.2f}s"
        after = task(client, stuck["id"])
        assert after["status"] == "stale"
        assert after["lastError"].startswith("timeout")

        # The abandoned call must not starve the next ticks: they still deliver.
        for n in range(2):
            web = enqueue(client, receiver.url(f"/web{n}"))
            dispatcher.tick()
            [call] = receiver.wait_for(1, f"/web{n}")
            assert call.json()["attempt"] == 1
            assert task(client, web["id"])["status"] == "resolved"
    finally:
        release.set()


# -- lost attempts ------------------------------------------------------------------


class SeesLost:
    def __init__(self) -> None:
        self.seen: list[RecordedOutcome] = []

    @scheduler_core.hookimpl
    def scheduler_attempt_lost(self, recorded):
        self.seen.append(recorded)


def test_scheduler_attempt_lost_hears_each_attempt_the_reaper_records_once(
    client, dispatcher, store, plugins, db
):
    observer = SeesLost()
    plugins.register(observer)
    set_config(store, max_retries=1)
    first = enqueue(client, "http://127.0.0.1:9/a")
    second = enqueue(client, "http://127.0.0.1:9/b", maxRetries=0)
    for claimed in store.claim_due(10, 60_000):  # a dispatcher that dies holding them
        db.expire_lease(claimed.id)

    dispatcher.tick()
    dispatcher.tick()

    by_task = {r.task_id: r for r in observer.seen}
    assert len(observer.seen) == 2 and set(by_task) == {first["id"], second["id"]}
    for recorded in observer.seen:
        assert (recorded.kind.value, recorded.lost, recorded.attempt) == ("lost", True, 1)
        assert recorded.outcome.error.startswith("lease expired")
        assert recorded.lateness_ms is None
    # With budget left the task is due again at once; without, it is stale.
    assert by_task[first["id"]].decision.retry_in_ms == 0
    assert by_task[second["id"]].decision.is_stale
    assert task(client, second["id"])["status"] == "stale"
    assert [a["outcome"] for a in attempts(client, first["id"])][0] == "lost"


def test_a_lost_attempt_observer_that_raises_does_not_stop_the_reaper(
    client, dispatcher, store, plugins, db, caplog
):
    class Broken:
        @scheduler_core.hookimpl
        def scheduler_attempt_lost(self, recorded):
            raise RuntimeError(f"observer bug quoting {recorded.task_id}")

    plugins.register(Broken())
    lost = enqueue(client, "http://127.0.0.1:9/a", maxRetries=0)
    [claimed] = store.claim_due(10, 60_000)
    db.expire_lease(claimed.id)

    dispatcher.tick()

    assert task(client, lost["id"])["status"] == "stale"  # recorded all the same
    assert "a plugin failed observing a lost attempt: RuntimeError" in caplog.text
    assert "observer bug quoting" not in caplog.text
