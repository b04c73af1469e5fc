"""End to end on the shared Redis: a task enqueued through the core's API, claimed and
delivered by the core's real dispatcher, read back with redis-py."""

from __future__ import annotations

import importlib.metadata
import json
import time

import pytest
import redis
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from standardwebhooks import Webhook

import scheduler_core_redis

from conftest import SHARED_HOST, SHARED_PORT, enqueue, get_attempts, get_task

SECRET = "whsec_x6fUI2o6p4RhN5XbXh8EqfvSUiIpiPopZZqpjXkzGXY="
BASE = f"redis://{SHARED_HOST}:{SHARED_PORT}"


def _fields(entry: tuple[bytes, dict[bytes, bytes]]) -> dict[str, bytes]:
    return {name.decode(): value for name, value in entry[1].items()}


def test_the_entry_point_names_the_package_and_it_claims_redis_and_rediss(database_url):
    [entry] = [
        ep for ep in importlib.metadata.entry_points(group="scheduler_core") if ep.name == "redis"
    ]
    assert entry.value == "scheduler_core_redis"
    assert entry.dist is not None and entry.dist.name == "scheduler-core-redis"
    assert entry.load() is scheduler_core_redis
    plugins = PluginManager(
        Settings(database_url=database_url, load_entry_points=False),
        extra_plugins=(entry.load(),),
    )
    assert {"redis", "rediss", "http", "https"} <= plugins.delivery_schemes()


def test_a_stream_task_is_added_with_the_body_and_every_header(
    client, dispatcher, shared_redis, key
):
    created = enqueue(
        client,
        f"{BASE}/0?stream={key}",
        payload={"order": 42, "name": "été"},
        webhookAuth="Bearer tok-123",
    )
    dispatcher.tick()

    task = get_task(client, created["id"])
    assert task["status"] == "resolved", task["lastError"]
    assert task["attempts"] == 1 and task["lastError"] is None
    [entry] = shared_redis.xrange(key)
    fields = _fields(entry)
    body = json.loads(fields["body"])
    assert body == {
        "taskId": created["id"],
        "executeAt": created["executeAt"],
        "attempt": 1,
        "payload": {"order": 42, "name": "été"},
    }
    assert list(fields) == [
        "body",
        "content-type",
        "user-agent",
        "x-scheduler-task-id",
        "x-scheduler-attempt",
        "authorization",
        "x-scheduler-complete-url",
        "x-scheduler-fail-url",
    ]
    assert fields["content-type"] == b"application/json"
    assert fields["user-agent"].startswith(b"scheduler-core/")
    assert fields["x-scheduler-task-id"] == created["id"].encode()
    assert fields["x-scheduler-attempt"] == b"1"
    assert fields["authorization"] == b"Bearer tok-123"
    assert b"/callbacks/v1/complete/" in fields["x-scheduler-complete-url"]
    assert b"/callbacks/v1/fail/" in fields["x-scheduler-fail-url"]
    [attempt] = get_attempts(client, created["id"])
    assert attempt["outcome"] == "resolved" and attempt["latenessMs"] is not None


def test_the_database_in_the_path_is_selected(client, dispatcher, shared_redis, key):
    created = enqueue(client, f"{BASE}/3?stream={key}", payload=1)
    dispatcher.tick()
    assert get_task(client, created["id"])["status"] == "resolved"
    assert shared_redis.exists(key) == 0
    db3 = redis.Redis(host=SHARED_HOST, port=SHARED_PORT, db=3)
    assert db3.xlen(key) == 1
    db3.close()


def test_maxlen_trims_the_stream(client, dispatcher, shared_redis, key):
    shared_redis.xadd(key, {"old": "x"})
    for i in range(300):  # trimming with ~ removes whole macro nodes (100 entries) only
        shared_redis.xadd(key, {"filler": str(i)})
    enqueue(client, f"{BASE}/0?stream={key}&maxlen=10", payload=1)
    dispatcher.tick()
    assert shared_redis.xlen(key) < 301
    assert "body" in _fields(shared_redis.xrevrange(key, count=1)[0])


@pytest.mark.parametrize("signing_secrets", [(SECRET,)])
def test_a_signed_entry_verifies_with_standard_webhooks(client, dispatcher, shared_redis, key):
    created = enqueue(client, f"{BASE}/0?stream={key}", payload={"k": "v"})
    dispatcher.tick()
    [entry] = shared_redis.xrange(key)
    fields = _fields(entry)
    headers = {name: value.decode() for name, value in fields.items() if name != "body"}
    assert headers["webhook-id"] == created["id"]
    verified = Webhook(SECRET).verify(fields["body"], headers)
    assert verified["payload"] == {"k": "v"}


@pytest.mark.parametrize("signing_secrets", [(SECRET,)])
def test_a_published_envelope_reaches_a_subscriber_and_verifies(
    client, dispatcher, shared_redis, key
):
    subscriber = shared_redis.pubsub()
    subscriber.subscribe(key)
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    created = enqueue(client, f"{BASE}/0?channel={key}", payload={"n": "é"})
    dispatcher.tick()

    message = subscriber.get_message(timeout=5)
    subscriber.close()
    assert message is not None and message["type"] == "message"
    envelope = json.loads(message["data"])
    assert set(envelope) == {"headers", "body"}
    assert json.loads(envelope["body"])["taskId"] == created["id"]
    assert envelope["headers"]["content-type"] == "application/json"
    assert envelope["headers"]["x-scheduler-task-id"] == created["id"]
    # The body text, as UTF-8, is exactly the bytes that were signed.
    verified = Webhook(SECRET).verify(envelope["body"].encode(), envelope["headers"])
    assert verified["payload"] == {"n": "é"}
    assert get_task(client, created["id"])["status"] == "resolved"


def test_publishing_to_no_subscriber_succeeds_unless_subscribers_are_required(
    client, dispatcher, key
):
    anyone = enqueue(client, f"{BASE}/0?channel={key}", payload=1)
    required = enqueue(client, f"{BASE}/0?channel={key}&require_subscribers=1", payload=1)
    dispatcher.tick()
    assert get_task(client, anyone["id"])["status"] == "resolved"
    failed = get_task(client, required["id"])
    assert failed["status"] == "pending" and failed["attempts"] == 1
    assert failed["lastError"] == "no subscriber received the message (require_subscribers=1)"


def test_a_url_without_stream_or_channel_is_accepted_but_its_attempts_fail_clearly(
    client, dispatcher
):
    # No enqueue-time hook lets a delivery plugin check its URLs, so the attempt says it.
    created = enqueue(client, f"{BASE}/0?steam=oops", payload=1, maxRetries=0)
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["status"] == "stale"
    assert task["lastError"].startswith("invalid redis url: unknown query parameter(s): steam")


def test_a_key_of_another_type_fails_the_attempt(client, dispatcher, shared_redis, key):
    shared_redis.set(key, "a string, not a stream")
    created = enqueue(client, f"{BASE}/0?stream={key}", payload=1)
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["status"] == "pending" and task["attempts"] == 1
    assert task["lastError"] == (
        "redis error: WRONGTYPE Operation against a key holding the wrong kind of value"
    )


def test_a_database_the_server_lacks_fails_the_attempt(client, dispatcher):
    created = enqueue(client, f"{BASE}/999?stream=never", payload=1)
    dispatcher.tick()
    assert get_task(client, created["id"])["lastError"] == "redis error: DB index is out of range"


def test_a_name_that_does_not_resolve_fails_the_attempt(client, dispatcher):
    created = enqueue(client, "redis://no-such-host.invalid:6379/0?stream=s", payload=1)
    dispatcher.tick()
    error = get_task(client, created["id"])["lastError"]
    assert error.startswith("dns error: cannot resolve no-such-host.invalid")


def test_an_http_url_is_left_to_the_http_plugin():
    from types import MappingProxyType

    from scheduler_core.models import Callback

    callback = Callback(url="http://127.0.0.1:1/x", headers=MappingProxyType({}), body=b"{}")
    assert scheduler_core_redis.scheduler_deliver(callback, time.monotonic() + 1) is None
