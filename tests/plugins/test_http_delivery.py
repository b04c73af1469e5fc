"""The built-in HTTP delivery, seen from a real receiver: what is sent, what counts as done."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from scheduler_core import __version__
from scheduler_core.judgement import parse_retry_after
from scheduler_core.models import ClaimedTask, DeliveryOutcome, NewTask, RetryDecision
from scheduler_core.plugins.backoff_retry import backoff_ms, scheduler_retry_decision
from scheduler_core.runtime_config import RuntimeConfig
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task, timed_tick
from tests.plugins.rawservers import HeaderTrickler, Huge, RawServer, Silent, closed_port

TIMEOUT_MS = 1000
# A timed-out attempt may overrun the callback timeout by this much, no more.
OVERRUN_S = 1.5
# The plugin must notice its own deadline well before the dispatcher's straggler grace.
PLUGIN_SLACK_MS = 500


@pytest.fixture
def fast_retries(store):
    set_config(store, retry_backoff_ms=0)


# -- what the callback looks like ---------------------------------------------------


def test_callback_carries_the_spec_headers_and_body_on_every_attempt(
    client, dispatcher, receiver, store, fast_retries
):
    receiver.behave("/cb", statuses=[500, 200])
    execute_at = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=250000)
    auth = "Bearer abc.DEF-123_~+/= x"
    payload = {"order": 42, "items": ["a", "b"], "note": "café"}
    created = enqueue(
        client,
        receiver.url("/cb"),
        webhookAuth=auth,
        payload=payload,
        executeAt=execute_at.isoformat().replace("+00:00", "Z"),
    )

    dispatcher.tick()
    dispatcher.tick()
    first, second = receiver.wait_for(2, "/cb")

    for number, call in enumerate((first, second), start=1):
        assert call.header("Content-Type") == "application/json"
        assert call.header("Authorization") == auth
        assert call.header("User-Agent") == f"scheduler-core/{__version__}"
        assert call.header("X-Scheduler-Task-Id") == created["id"]
        assert call.header("X-Scheduler-Attempt") == str(number)
        body = call.json()
        assert list(body) == ["taskId", "executeAt", "attempt", "payload"]
        assert body["taskId"] == created["id"]
        assert body["attempt"] == number
        assert datetime.fromisoformat(body["executeAt"]) == execute_at
        assert body["executeAt"] == created["executeAt"]
        assert body["payload"] == payload
    assert task(client, created["id"])["status"] == "resolved"


def test_no_authorization_header_and_null_payload_when_omitted(client, dispatcher, receiver):
    created = enqueue(client, receiver.url("/bare"))
    dispatcher.tick()
    [call] = receiver.wait_for(1, "/bare")
    assert call.header("Authorization") is None
    assert call.json()["payload"] is None
    assert call.body.endswith(b'"payload": null}')
    assert call.json()["taskId"] == created["id"]


def test_webhook_auth_is_sent_verbatim_even_when_the_url_has_credentials(
    client, dispatcher, receiver
):
    url = receiver.url("/creds").replace("http://", "http://user:pw@")
    enqueue(client, url, webhookAuth="Bearer the-real-token")
    dispatcher.tick()
    [call] = receiver.wait_for(1, "/creds")
    assert call.header("Authorization") == "Bearer the-real-token"


@pytest.mark.parametrize(
    "payload",
    [
        {"zeta": 1, "alpha": [1, 2.5, "é", None, {"nested": True}], "mid": 12345678901234567890},
        [3, 2, 1],
        'just a string with "quotes" and \\ and \u2603',
        0.1,
        False,
    ],
    ids=["object", "array", "string", "float", "false"],
)
def test_payload_reaches_the_receiver_byte_for_byte_as_stored(dispatcher, receiver, store, payload):
    [(created, _)] = store.enqueue([NewTask(webhook_url=receiver.url("/p"), payload=payload)])
    dispatcher.tick()
    [call] = receiver.wait_for(1, "/p")
    stored = json.dumps(payload, ensure_ascii=False).encode()
    assert call.body.endswith(b'"payload": ' + stored + b"}")
    assert call.json()["payload"] == payload


def test_payload_key_order_survives_the_api(client, dispatcher, receiver):
    # jsonb would reorder these keys (shortest first); the receiver must see them as sent.
    raw = '{"webhookUrl": "%s", "payload": {"zeta": 1, "alpha": {"b": 2, "a": 1}, "mid": []}}'
    response = client.post(
        "/api/v1/tasks", data=raw % receiver.url("/order"), content_type="application/json"
    )
    assert response.status_code == 201
    dispatcher.tick()
    [call] = receiver.wait_for(1, "/order")
    assert call.body.endswith(b'"payload": {"zeta": 1, "alpha": {"b": 2, "a": 1}, "mid": []}}')


# -- what counts as delivered ------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_resolves(client, dispatcher, receiver, status):
    receiver.behave("/ok", statuses=[status], body=b"" if status == 204 else b"fine")
    created = enqueue(client, receiver.url("/ok"))
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["lastStatusCode"] == status
    assert after["lastError"] is None
    assert after["resolvedAt"] is not None
    assert after["attempts"] == 1


def test_redirect_is_a_failure_and_is_not_followed(client, dispatcher, receiver):
    receiver.behave("/target", statuses=[200])
    receiver.behave("/moved", statuses=[302], headers={"Location": receiver.url("/target")})
    created = enqueue(client, receiver.url("/moved"))
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["attempts"] == 1
    assert after["lastStatusCode"] == 302
    assert "302" in after["lastError"]
    assert receiver.calls("/target") == []
    assert len(receiver.calls("/moved")) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 410, 500, 502, 503])
def test_client_and_server_errors_fail_the_attempt(client, dispatcher, receiver, status):
    receiver.behave("/err", statuses=[status], body=b"something broke")
    created = enqueue(client, receiver.url("/err"))
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["attempts"] == 1
    assert after["lastStatusCode"] == status
    assert str(status) in after["lastError"]
    assert after["resolvedAt"] is None
    [record] = attempts(client, created["id"])
    assert record["statusCode"] == status
    assert str(status) in record["error"]


def test_refused_connection(client, dispatcher):
    created = enqueue(client, f"http://127.0.0.1:{closed_port()}/nobody")
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["lastError"] == "connection refused"
    assert after["lastStatusCode"] is None


def test_dns_failure(client, dispatcher):
    created = enqueue(client, "http://nonexistent.invalid/hook")
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["lastError"].startswith("dns error")
    assert after["lastStatusCode"] is None


# -- the callback timeout is a total deadline --------------------------------------


@pytest.fixture
def raw_servers() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


def _slow_target(kind: str, receiver, raw_servers) -> str:
    if kind == "delayed answer":
        receiver.behave("/slow", delay=3.0)
        return receiver.url("/slow")
    if kind == "trickled body":
        receiver.behave("/slow", trickle_every=0.3, trickle_bytes=20)
        return receiver.url("/slow")
    server: RawServer = HeaderTrickler(every=0.3) if kind == "trickled headers" else Silent()
    raw_servers.append(server)
    return server.url("/slow")


@pytest.mark.parametrize(
    "kind", ["delayed answer", "trickled body", "trickled headers", "never answers"]
)
def test_callback_timeout_bounds_the_whole_attempt(
    client, dispatcher, receiver, store, raw_servers, kind
):
    set_config(store, http_callback_timeout_ms=TIMEOUT_MS)
    created = enqueue(client, _slow_target(kind, receiver, raw_servers))

    wall = timed_tick(dispatcher)

    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["lastError"].startswith("timeout"), after["lastError"]
    assert after["lastStatusCode"] is None
    [record] = attempts(client, created["id"])
    assert record["error"].startswith("timeout")
    # The HTTP plugin itself gave up at the deadline, not the dispatcher's last resort.
    assert "no outcome" not in record["error"]
    assert TIMEOUT_MS * 0.9 <= record["durationMs"] <= TIMEOUT_MS + PLUGIN_SLACK_MS
    assert wall <= TIMEOUT_MS / 1000 + OVERRUN_S, f"tick took {wall:.2f}s"


def test_the_deadline_also_bounds_a_reused_keep_alive_connection(
    client, dispatcher, receiver, store, monkeypatch
):
    from scheduler_core.plugins import http_delivery

    opened = []
    original = http_delivery._DeadlineConnection._new_conn

    def counting_new_conn(self):
        opened.append(self)
        return original(self)

    monkeypatch.setattr(http_delivery._DeadlineConnection, "_new_conn", counting_new_conn)
    # One delivery thread, so one keep-alive session for every tick.
    set_config(store, http_callback_timeout_ms=TIMEOUT_MS, select_size=1)
    receiver.behave("/trickle", trickle_every=0.3, trickle_bytes=20)
    fast = enqueue(client, receiver.url("/fast"))
    dispatcher.tick()
    assert task(client, fast["id"])["status"] == "resolved"
    connections_before = len(opened)
    assert connections_before >= 1

    slow = enqueue(client, receiver.url("/trickle"))
    wall = timed_tick(dispatcher)
    assert len(opened) == connections_before  # the kept-alive connection was reused
    [record] = attempts(client, slow["id"])
    assert record["error"].startswith("timeout") and "no outcome" not in record["error"]
    assert record["durationMs"] <= TIMEOUT_MS + PLUGIN_SLACK_MS
    assert wall <= TIMEOUT_MS / 1000 + OVERRUN_S, f"tick took {wall:.2f}s"

    # The spoiled connection is not handed to the next delivery.
    again = enqueue(client, receiver.url("/fast"))
    dispatcher.tick()
    assert task(client, again["id"])["status"] == "resolved"


def test_a_timed_out_attempt_does_not_hold_up_the_rest_of_the_tick(
    client, dispatcher, receiver, store, raw_servers
):
    set_config(store, http_callback_timeout_ms=TIMEOUT_MS)
    silent = Silent()
    raw_servers.append(silent)
    hung = enqueue(client, silent.url())
    quick = enqueue(client, receiver.url("/quick"))
    wall = timed_tick(dispatcher)
    assert task(client, quick["id"])["status"] == "resolved"
    assert task(client, hung["id"])["lastError"].startswith("timeout")
    assert wall <= TIMEOUT_MS / 1000 + OVERRUN_S


@pytest.mark.parametrize("status", [200, 500])
def test_a_huge_response_is_not_read_whole(client, dispatcher, store, raw_servers, status):
    set_config(store, http_callback_timeout_ms=5000)
    server = Huge(status=status, size=50 * 1024 * 1024)
    raw_servers.append(server)
    created = enqueue(client, server.url())

    tracemalloc.start()
    try:
        wall = timed_tick(dispatcher)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    after = task(client, created["id"])
    assert after["lastStatusCode"] == status
    assert after["status"] == ("resolved" if status == 200 else "pending")
    assert wall < 3.0, f"tick took {wall:.2f}s"
    assert peak < 10 * 1024 * 1024, f"peak traced memory {peak} bytes"
    # The scheduler hung up long before 50 MB went through.
    assert server.finished.wait(10)
    assert server.sent < 40 * 1024 * 1024
    if status == 500:
        assert len(after["lastError"]) < 400


# -- Retry-After parsing and the default backoff policy ----------------------------


NOW = datetime(2030, 5, 17, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2000),
        (" 120 ", 120_000),
        ("0", 0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30_000),
        ("Fri, 17 May 2030 12:01:00 GMT", 60_000),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0),
    ],
)
def test_parse_retry_after_understands_seconds_and_http_dates(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "-5", "1.5", "+3", "2 seconds", "\u00b2", "\u00b9\u00b2"]
)
def test_parse_retry_after_ignores_garbage(value):
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_defaults_to_the_current_time():
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8000 <= parse_retry_after(in_ten) <= 10_000


def test_backoff_doubles_per_retry_up_to_the_cap():
    config = RuntimeConfig(retry_backoff_ms=1000, retry_backoff_max_ms=10_000)
    assert [backoff_ms(n, config) for n in range(1, 7)] == [
        1000,
        2000,
        4000,
        8000,
        10_000,
        10_000,
    ]
    assert backoff_ms(0, config) == 1000
    assert backoff_ms(10**6, config) == 10_000
    assert backoff_ms(3, RuntimeConfig(retry_backoff_ms=0, retry_backoff_max_ms=0)) == 0


def _claimed(attempts_in_budget: int) -> ClaimedTask:
    return ClaimedTask(
        id="t",
        webhook_url="http://x/",
        webhook_auth=None,
        execute_at=NOW,
        payload_json="null",
        attempt=attempts_in_budget,
        attempts_in_budget=attempts_in_budget,
        max_retries=None,
    )


@pytest.mark.parametrize(
    ("status", "retry_after_ms", "expected_ms"),
    [
        (429, 2000, 2000),
        (503, 7000, 7000),
        (503, 999_999_999, 60_000),  # capped
        (429, None, 4000),  # no header: backoff
        (500, 2000, 4000),  # only 429 and 503 honour Retry-After
        (None, None, 4000),  # a connection error
    ],
)
def test_default_retry_policy(status, retry_after_ms, expected_ms):
    config = RuntimeConfig(retry_backoff_ms=1000, retry_backoff_max_ms=60_000)
    outcome = DeliveryOutcome(
        ok=False, status_code=status, error="x", retry_after_ms=retry_after_ms
    )
    decision = scheduler_retry_decision(task=_claimed(3), outcome=outcome, config=config)
    assert decision == RetryDecision(retry_in_ms=expected_ms)


def test_a_retry_after_header_in_odd_digits_still_fails_cleanly(client, dispatcher, receiver):
    # "²" is a digit to str.isdigit() but not to int(); it must not break the delivery.
    receiver.behave("/odd", statuses=[503], headers={"Retry-After": "\u00b2"})
    created = enqueue(client, receiver.url("/odd"))
    started = time.monotonic()
    dispatcher.tick()
    assert time.monotonic() - started < 5
    after = task(client, created["id"])
    assert after["lastStatusCode"] == 503
    assert "503" in after["lastError"]


# -- kept-alive connections and whole requests ---------------------------------------------


def test_a_kept_alive_connection_closed_by_the_receiver_is_retried_on_a_fresh_one(
    client, dispatcher, store, raw_servers
):
    from tests.plugins.rawservers import ClosesReusedConnections

    set_config(store, select_size=1)  # one after the other: the second reuses the connection
    server = ClosesReusedConnections()
    raw_servers.append(server)
    first = enqueue(client, server.url("/a"), maxRetries=0)
    dispatcher.tick()
    second = enqueue(client, server.url("/b"), maxRetries=0)
    dispatcher.tick()
    for created in (first, second):
        after = task(client, created["id"])
        assert (after["status"], after["attempts"], after["lastStatusCode"]) == (
            "resolved",
            1,
            200,
        )
    assert server.requests == 3  # the second request went twice: at-least-once allows it


def test_a_request_head_and_body_go_out_in_one_write(client, dispatcher, receiver, monkeypatch):
    from scheduler_core.plugins import socket_deadline

    writes = []
    original = socket_deadline.DeadlineScope.before_send

    def counting(self):
        writes.append(self)
        return original(self)

    monkeypatch.setattr(socket_deadline.DeadlineScope, "before_send", counting)
    created = enqueue(client, receiver.url("/whole"), payload={"big": "x" * 100_000})
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"
    assert len(writes) == 1  # checked against the deadline once: one write, head and body
    [call] = receiver.calls("/whole")
    assert call.json()["payload"] == {"big": "x" * 100_000}
