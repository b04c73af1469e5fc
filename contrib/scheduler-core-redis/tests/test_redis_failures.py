"""Failures, deadlines, secrets and the connection pool, on Redis servers this test owns
(subprocesses on free ports, stopped and restarted at will) and on fake servers that
accept a connection and then answer slowly or never."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import MappingProxyType

import pytest
from scheduler_core import targets
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.models import Callback

from scheduler_core_redis import delivery
from scheduler_core_redis.delivery import deliver, pool

from conftest import enqueue, get_attempts, get_task

PASSWORD = "Pa55-word-XYZ-9"
WRONG = "wrong-Secret-777"


def _connections(server) -> int:
    """How many connections the server has accepted so far (this client's included)."""
    client = server.client(password=PASSWORD) if PASSWORD in server.extra else server.client()
    try:
        return int(client.info("stats")["total_connections_received"])
    finally:
        client.close()


def _callback(url: str, body: bytes = b'{"taskId": "t"}') -> Callback:
    headers = MappingProxyType({"Content-Type": "application/json", "X-Scheduler-Task-Id": "t"})
    return Callback(url=url, headers=headers, body=body, task_id="t")


# -- the broker goes away and comes back --------------------------------------------------


def test_broker_down_fails_the_attempt_and_the_retry_delivers_once_it_is_back(
    client, dispatcher, store, redis_server
):
    store.update_config({"retry_backoff_ms": 0})  # the retry is due at once
    server = redis_server()
    url = f"redis://127.0.0.1:{server.port}/0?stream=jobs"
    first = enqueue(client, url, payload="first")
    dispatcher.tick()
    assert get_task(client, first["id"])["status"] == "resolved"
    assert pool.idle() == 1  # kept for the next attempt

    server.stop()
    second = enqueue(client, url, payload="second")
    dispatcher.tick()
    down = get_task(client, second["id"])
    assert down["status"] == "pending" and down["attempts"] == 1
    assert down["lastError"] == "connection refused"

    server.start()  # same port, empty (no persistence)
    dispatcher.tick()
    up = get_task(client, second["id"])
    assert up["status"] == "resolved" and up["attempts"] == 2
    entries = server.client().xrange("jobs")
    assert [e[1][b"body"].count(b'"second"') for e in entries] == [1]
    outcomes = [a["outcome"] for a in get_attempts(client, second["id"])]
    assert outcomes == ["failed", "resolved"]


def test_a_kept_connection_the_server_dropped_is_replaced_without_a_failed_attempt(
    client, dispatcher, redis_server
):
    server = redis_server()
    url = f"redis://127.0.0.1:{server.port}/0?stream=jobs"
    enqueue(client, url, payload=1)
    dispatcher.tick()
    assert pool.idle() == 1
    server.stop()
    server.start()  # the kept connection is dead now

    created = enqueue(client, url, payload=2)
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["status"] == "resolved" and task["attempts"] == 1
    assert len(server.client().xrange("jobs")) == 1


def test_a_kept_connection_that_breaks_as_it_is_used_is_replaced_within_the_attempt(
    redis_server, monkeypatch
):
    server = redis_server()
    url = f"redis://127.0.0.1:{server.port}/0?stream=s"
    assert deliver(_callback(url), time.monotonic() + 2).error is None
    server.stop()
    server.start()
    # As if the server closed it between the check and the command: it is used anyway.
    monkeypatch.setattr(delivery, "_usable", lambda conn: True)
    report = deliver(_callback(url), time.monotonic() + 2)
    assert report.error is None and not report.timed_out
    assert server.client().xlen("s") == 1


def test_a_server_that_closes_idle_connections_costs_no_attempt(client, dispatcher, redis_server):
    server = redis_server("--timeout", "1")  # the server closes clients idle for 1 s
    url = f"redis://127.0.0.1:{server.port}/0?stream=jobs"
    enqueue(client, url, payload=1)
    dispatcher.tick()
    time.sleep(2.5)
    created = enqueue(client, url, payload=2)
    dispatcher.tick()
    assert get_task(client, created["id"])["status"] == "resolved"
    assert len(server.client().xrange("jobs")) == 2


# -- credentials ---------------------------------------------------------------------------


@pytest.fixture
def locked_server(redis_server):
    return redis_server(
        "--requirepass", PASSWORD, "--user", "alice", "on", ">alice-pass-123", "~*", "+@all"
    )


def test_the_right_password_delivers(client, dispatcher, locked_server):
    port = locked_server.port
    by_password = enqueue(client, f"redis://:{PASSWORD}@127.0.0.1:{port}/0?stream=s", payload=1)
    by_user = enqueue(
        client, f"redis://alice:alice-pass-123@127.0.0.1:{port}/0?stream=s", payload=2
    )
    dispatcher.tick()
    assert get_task(client, by_password["id"])["status"] == "resolved"
    assert get_task(client, by_user["id"])["status"] == "resolved"
    assert len(locked_server.client(password=PASSWORD).xrange("s")) == 2


@pytest.mark.parametrize(
    ("userinfo", "expected"),
    [
        (f":{WRONG}", "redis authentication failed: invalid username-password pair"),
        (f"alice:{WRONG}", "redis authentication failed: invalid username-password pair"),
        ("", "redis authentication failed: the server requires a password"),
    ],
    ids=["wrong-password", "wrong-user-password", "no-password"],
)
def test_an_auth_failure_fails_the_attempt_and_never_shows_the_secret(
    client, dispatcher, locked_server, caplog, userinfo, expected
):
    caplog.set_level(logging.DEBUG)
    at = f"{userinfo}@" if userinfo else ""
    created = enqueue(client, f"redis://{at}127.0.0.1:{locked_server.port}/0?stream=s", payload=1)
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["status"] == "pending"
    assert task["lastError"].startswith(expected), task["lastError"]
    [attempt] = get_attempts(client, created["id"])
    for shown in (task["lastError"], attempt["error"], task["webhookUrl"], caplog.text):
        assert WRONG not in shown and "alice:" not in shown
    assert locked_server.client(password=PASSWORD).exists("s") == 0


def test_a_connection_is_never_reused_with_another_password(client, dispatcher, locked_server):
    port = locked_server.port
    right = enqueue(client, f"redis://:{PASSWORD}@127.0.0.1:{port}/0?stream=s", payload=1)
    dispatcher.tick()
    assert get_task(client, right["id"])["status"] == "resolved"
    assert pool.idle() == 1  # authenticated with PASSWORD

    wrong = enqueue(client, f"redis://:{WRONG}@127.0.0.1:{port}/0?stream=s", payload=2)
    dispatcher.tick()
    task = get_task(client, wrong["id"])
    assert task["status"] == "pending"
    assert task["lastError"].startswith("redis authentication failed")
    assert len(locked_server.client(password=PASSWORD).xrange("s")) == 1


def test_a_refused_connection_with_credentials_shows_none_of_them(client, dispatcher):
    port = _closed_port()
    created = enqueue(client, f"redis://alice:{WRONG}@127.0.0.1:{port}/0?stream=s", payload=1)
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["lastError"] == "connection refused"
    assert WRONG not in task["webhookUrl"] and "alice" not in task["webhookUrl"]


def test_messages_from_redis_py_are_scrubbed_of_credentials():
    from scheduler_core_redis.delivery import scrub
    from scheduler_core_redis.target import parse_target

    target = parse_target(f"redis://alice:{WRONG}%21@127.0.0.1:1/0?stream=s")
    text = f"Error connecting to alice:{WRONG}%21@127.0.0.1 ({WRONG}!, {WRONG.upper()}!)"
    scrubbed = scrub(text, target)
    assert WRONG.lower() not in scrubbed.lower() and "alice" not in scrubbed


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now


# -- the target policy ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_target_the_policy_refuses_at_connect_is_never_contacted(
    client, dispatcher, redis_server, host
):
    server = redis_server()
    created = enqueue(client, f"redis://{host}:{server.port}/0?stream=s", payload=1)
    before = _connections(server)
    # Denied after the enqueue check: delivery checks every resolved address again.
    targets.set_policy(targets.TargetPolicy.from_settings(None, "127.0.0.0/8, ::1/128"))
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["lastError"].startswith(f"target refused: {host}")
    assert "denied by SCHEDULER_DENIED_TARGETS" in task["lastError"]
    assert _connections(server) == before + 1  # only _connections' own
    assert server.client().exists("s") == 0


# -- the deadline ----------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out_within_the_callback_timeout(
    client, dispatcher, store, fake_redis
):
    store.update_config({"http_callback_timeout_ms": 300})
    silent = fake_redis("silent")
    created = enqueue(client, f"redis://127.0.0.1:{silent.port}/0?stream=s", payload=1)
    started = time.monotonic()
    dispatcher.tick()
    elapsed = time.monotonic() - started
    task = get_task(client, created["id"])
    assert task["lastError"] == (
        "timeout: Redis did not answer the connection handshake within the 300 ms callback timeout"
    )
    assert elapsed < 1.5
    assert b"XADD" not in silent.names()  # the message itself was never sent


def test_no_answer_to_the_command_times_out_at_the_deadline(fake_redis):
    hang = fake_redis("hang")
    deadline = time.monotonic() + 0.3
    report = deliver(_callback(f"redis://127.0.0.1:{hang.port}/0?stream=s"), deadline)
    assert time.monotonic() - deadline < 0.15
    assert report.timed_out and report.error == "no answer from Redis to the command"
    assert report.sent_at is not None and report.sent_at < deadline
    [(sent, command)] = [(t, c) for t, c in hang.commands if c[0].upper() == b"XADD"]
    assert sent < deadline and command[1:4] == [b"s", b"*", b"body"]


def test_an_answer_trickled_byte_by_byte_cannot_stretch_the_attempt(fake_redis):
    trickle = fake_redis("trickle", trickle_s=0.05)  # each byte well within any socket timeout
    deadline = time.monotonic() + 0.5
    report = deliver(_callback(f"redis://127.0.0.1:{trickle.port}/0?stream=s"), deadline)
    assert time.monotonic() - deadline < 0.15
    assert report.timed_out and report.error == "no answer from Redis to the command"


def test_nothing_is_sent_when_the_deadline_has_passed(fake_redis):
    hang = fake_redis("hang")
    report = deliver(_callback(f"redis://127.0.0.1:{hang.port}/0?stream=s"), time.monotonic())
    assert report.timed_out and report.error == "the attempt did not start"
    assert report.sent_at is None
    time.sleep(0.1)
    assert hang.received == []


def test_no_command_is_written_after_the_deadline_on_a_kept_connection(redis_server):
    server = redis_server()
    url = f"redis://127.0.0.1:{server.port}/0?stream=s"
    assert deliver(_callback(url), time.monotonic() + 2).error is None
    assert pool.idle() == 1
    report = deliver(_callback(url), time.monotonic() - 0.001)
    assert report.timed_out and report.sent_at is None
    assert len(server.client().xrange("s")) == 1


def test_a_slow_name_lookup_times_out_as_name_resolution(client, dispatcher, store, monkeypatch):
    real = socket.getaddrinfo
    release = threading.Event()

    def slow(host, *args, **kwargs):
        if host == "slow-dns.test":
            release.wait(5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    store.update_config({"http_callback_timeout_ms": 300})
    created = enqueue(client, "redis://slow-dns.test:6379/0?stream=s", payload=1)
    started = time.monotonic()
    dispatcher.tick()
    release.set()
    assert time.monotonic() - started < 1.5
    assert get_task(client, created["id"])["lastError"] == (
        "timeout: name resolution did not finish within the 300 ms callback timeout"
    )


# -- many threads, few connections -----------------------------------------------------------


def test_64_delivery_threads_deliver_every_task_once_over_at_most_64_connections(
    client, store, plugins, redis_server
):
    server = redis_server()
    store.update_config({"select_size": 300})
    url = f"redis://127.0.0.1:{server.port}/0?stream=busy"
    response = client.post(
        "/api/v1/tasks", json=[{"webhookUrl": url, "payload": i} for i in range(300)]
    )
    assert response.status_code == 201
    ids = {t["id"] for t in response.json["tasks"]}
    before = _connections(server)
    dispatcher = Dispatcher(store, plugins, delivery_threads=64)
    try:
        dispatcher.tick()
    finally:
        dispatcher.stop(wait=True)

    opened = _connections(server) - before - 1  # less the count's own
    entries = server.client().xrange("busy")
    assert sorted(e[1][b"x-scheduler-task-id"].decode() for e in entries) == sorted(ids)
    assert 1 <= opened <= 64
    assert pool.idle() == opened  # every one of them kept for the next burst
    statuses = client.get("/api/v1/tasks?status=resolved&limit=1000").json["tasks"]
    assert len(statuses) == 300


def test_attempts_one_after_another_share_one_connection(client, dispatcher, redis_server):
    server = redis_server()
    url = f"redis://127.0.0.1:{server.port}/0?stream=s"
    before = _connections(server)
    for i in range(10):
        enqueue(client, url, payload=i)
        dispatcher.tick()
    assert _connections(server) - before - 1 == 1
    assert len(server.client().xrange("s")) == 10


def test_deliver_is_thread_safe(redis_server):
    server = redis_server()
    url = f"redis://127.0.0.1:{server.port}/0?stream=s"
    errors: list[str | None] = []

    def work() -> None:
        for _ in range(20):
            report = deliver(_callback(url), time.monotonic() + 5)
            errors.append(report.error)

    threads = [threading.Thread(target=work) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [None] * 64 * 20
    assert server.client().xlen("s") == 64 * 20
    assert pool.idle() <= 64
