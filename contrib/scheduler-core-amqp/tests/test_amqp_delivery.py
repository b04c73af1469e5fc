"""Delivery to a real RabbitMQ through the core's API and dispatcher."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from typing import Any
from urllib.parse import quote

import pytest
from scheduler_core import __version__, targets

from scheduler_core_amqp.delivery import MAX_LINKS_PER_BROKER, pool
from scheduler_core_amqp.url import parse

PAYLOAD = {"b": 1, "a": [2, "three"]}


def envelope(created: dict[str, Any], attempt: int = 1) -> bytes:
    return (
        f'{{"taskId": "{created["id"]}", "executeAt": "{created["executeAt"]}", '
        f'"attempt": {attempt}, "payload": {{"b": 1, "a": [2, "three"]}}}}'
    ).encode()


# -- registration --------------------------------------------------------------------------


def test_the_distribution_registers_the_plugin_by_entry_point() -> None:
    found = [
        ep for ep in importlib.metadata.entry_points(group="scheduler_core") if ep.name == "amqp"
    ]
    assert [ep.value for ep in found] == ["scheduler_core_amqp"]
    assert found[0].dist is not None and found[0].dist.metadata["Name"] == "scheduler-core-amqp"


def test_the_api_takes_amqp_and_amqps_urls(api) -> None:
    api.enqueue("amqp://guest:guest@127.0.0.1:5672/?routing_key=q")
    api.enqueue("amqps://broker.example/vhost?exchange=x&routing_key=k")
    shown = api.enqueue("amqp://user:hunter22@127.0.0.1/?routing_key=q")["webhookUrl"]
    assert "hunter22" not in shown  # the core masks the userinfo


# -- what is sent ----------------------------------------------------------------------------


def test_the_callback_is_published_as_built(api, broker) -> None:
    queue = broker.queue()
    created = api.enqueue(
        f"{broker.url()}?routing_key={queue}", webhookAuth="Bearer t0ken", payload=PAYLOAD
    )
    api.tick()

    after = api.task(created["id"])
    assert after["status"] == "resolved"
    assert (after["lastError"], after["lastStatusCode"]) == (None, None)
    [(properties, body)] = broker.all(queue)
    assert body == envelope(created)
    headers = dict(properties.headers.items())
    # The attempt's one-time completion URLs (Scheduler-Async) go with every transport.
    assert "/callbacks/v1/complete/" in headers.pop("X-Scheduler-Complete-Url")
    assert "/callbacks/v1/fail/" in headers.pop("X-Scheduler-Fail-Url")
    assert list(headers.items()) == [
        ("Content-Type", "application/json"),
        ("User-Agent", f"scheduler-core/{__version__}"),
        ("X-Scheduler-Task-Id", created["id"]),
        ("X-Scheduler-Attempt", "1"),
        ("Authorization", "Bearer t0ken"),
    ]
    assert properties.content_type == "application/json"
    assert properties.message_id == created["id"]
    assert properties.delivery_mode == 2  # persistent
    [record] = api.attempts(created["id"])
    assert record["outcome"] == "resolved"
    assert record["latenessMs"] is not None  # measured to when the message went out


def test_a_signed_callback_carries_the_signature_headers(settings, store, broker) -> None:
    from dataclasses import replace

    from scheduler_core.api import create_app
    from scheduler_core.dispatcher import Dispatcher
    from scheduler_core.plugin_manager import PluginManager

    import scheduler_core_amqp

    signed = replace(settings, signing_secrets=("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",))
    plugins = PluginManager(signed, extra_plugins=(scheduler_core_amqp,))
    client = create_app(signed, store=store, plugins=plugins, test_config={"TESTING": True})
    dispatcher = Dispatcher(store, plugins)
    try:
        queue = broker.queue()
        response = client.test_client().post(
            "/api/v1/tasks", json={"webhookUrl": f"{broker.url()}?routing_key={queue}"}
        )
        assert response.status_code == 201
        created = response.get_json()
        assert created is not None
        dispatcher.tick()
    finally:
        dispatcher.stop(wait=True)
    [(properties, _)] = broker.all(queue)
    assert properties.headers["webhook-id"] == created["id"] == properties.message_id
    assert properties.headers["webhook-signature"].startswith("v1,")
    assert properties.headers["webhook-timestamp"].isdigit()


def test_exchange_routing_key_and_explicit_vhost(api, broker) -> None:
    exchange, queue = broker.exchange("topic"), broker.queue()
    broker.bind(queue, exchange, "jobs.*")
    created = api.enqueue(f"{broker.url()}%2F?exchange={exchange}&routing_key=jobs.nightly")
    api.tick()
    assert api.task(created["id"])["status"] == "resolved"
    [(properties, _)] = broker.all(queue)
    assert properties.message_id == created["id"]


def test_connections_are_kept_between_attempts(api, broker, proxy) -> None:
    through = proxy()
    queue = broker.queue()
    url = f"{broker.url(port=through.port)}?routing_key={queue}"
    for _ in range(3):
        created = api.enqueue(url)
        api.tick()
        assert api.task(created["id"])["status"] == "resolved"
    assert through.accepted == 1
    assert len(broker.all(queue)) == 3
    assert pool.idle_links(parse(url).broker_key) == 1


def test_many_concurrent_deliveries_share_a_few_connections(api, broker, proxy) -> None:
    through = proxy()
    queue = broker.queue()
    url = f"{broker.url(port=through.port)}?routing_key={queue}"
    api.config(select_size=200)
    created = api.enqueue_many([url] * 120)
    api.tick()
    statuses = {api.task(t["id"])["status"] for t in created}
    assert statuses == {"resolved"}
    messages = broker.all(queue)
    assert sorted(p.message_id for p, _ in messages) == sorted(t["id"] for t in created)
    assert 1 <= through.accepted <= MAX_LINKS_PER_BROKER


# -- what the broker says --------------------------------------------------------------------


def test_an_unroutable_message_is_a_failed_attempt(api, broker) -> None:
    api.config(retry_backoff_ms=60_000)
    created = api.enqueue(f"{broker.url()}?routing_key=sc-amqp-test-no-such-queue")
    api.tick()
    after = api.task(created["id"])
    assert after["status"] == "pending"
    assert after["lastError"].startswith(
        "unroutable: the broker returned the message (312 NO_ROUTE)"
    )
    [record] = api.attempts(created["id"])
    assert record["outcome"] == "failed"


def test_a_nack_is_a_failed_attempt(api, broker) -> None:
    queue = broker.queue(**{"x-max-length": 0, "x-overflow": "reject-publish"})
    created = api.enqueue(f"{broker.url()}?routing_key={queue}")
    api.tick()
    after = api.task(created["id"])
    assert after["status"] == "pending"
    assert after["lastError"].startswith("broker nack")
    assert broker.all(queue) == []


def test_an_unknown_exchange_fails_and_the_connection_serves_on(api, broker, proxy) -> None:
    through = proxy()
    queue = broker.queue()
    base = broker.url(port=through.port)
    created = api.enqueue(f"{base}?exchange=sc-amqp-test-no-such-exchange&routing_key=k")
    api.tick()
    error = api.task(created["id"])["lastError"]
    assert error.startswith("the broker closed the channel: 404 NOT_FOUND")
    good = api.enqueue(f"{base}?routing_key={queue}")
    api.tick()
    assert api.task(good["id"])["status"] == "resolved"
    assert through.accepted == 1  # a new channel, on the same connection


def test_a_bad_login_fails_without_showing_the_credentials(api, broker, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = "sched-user-x1", "pa:ss@w0rd-secret"
    url = f"amqp://{user}:{quote(password, safe='')}@127.0.0.1:5672/?routing_key=q"
    created = api.enqueue(url)
    api.tick()
    after = api.task(created["id"])
    assert after["lastError"].startswith("the broker refused the login (ACCESS_REFUSED)")
    [record] = api.attempts(created["id"])
    for text in (after["lastError"], record["error"], after["webhookUrl"], caplog.text):
        for secret in (user, password, quote(password, safe="")):
            assert secret not in text


def test_an_unknown_vhost_fails_saying_so(api, broker) -> None:
    created = api.enqueue(f"{broker.url()}sc-amqp-test-no-such-vhost?routing_key=q")
    api.tick()
    error = api.task(created["id"])["lastError"]
    assert error.startswith("the broker refused the virtual host: 530 NOT_ALLOWED")


def test_a_url_the_plugin_cannot_read_fails_the_attempt(api) -> None:
    created = api.enqueue("amqp://user:hunter22@127.0.0.1/?routingkey=q")
    api.tick()
    error = api.task(created["id"])["lastError"]
    assert error.startswith("invalid url: unknown query parameter 'routingkey'")
    assert "hunter22" not in error


# -- the broker goes away and comes back ---------------------------------------------------


def test_broker_down_fails_the_attempt_and_the_retry_delivers(api, broker, proxy) -> None:
    api.config(retry_backoff_ms=0, max_retries=5)
    through = proxy()
    queue = broker.queue()
    url = f"{broker.url(port=through.port)}?routing_key={queue}"
    first = api.enqueue(url)
    api.tick()
    assert api.task(first["id"])["status"] == "resolved"  # a connection is now kept

    through.stop()
    created = api.enqueue(url, payload=PAYLOAD)
    api.tick()
    down = api.task(created["id"])
    assert down["status"] == "pending"
    assert down["lastError"] == "connection refused"

    api.tick()  # still down: a second failed attempt, no connection kept meanwhile
    assert api.task(created["id"])["attempts"] == 2

    through.start()
    api.tick()
    after = api.task(created["id"])
    assert (after["status"], after["attempts"]) == ("resolved", 3)
    bodies = [body for _, body in broker.all(queue)]
    assert bodies[-1] == envelope(created, attempt=3)
    assert [a["outcome"] for a in api.attempts(created["id"])] == ["failed", "failed", "resolved"]


def test_a_kept_connection_that_died_is_replaced_within_the_attempt(api, broker, proxy) -> None:
    through = proxy()
    queue = broker.queue()
    url = f"{broker.url(port=through.port)}?routing_key={queue}"
    api.enqueue(url)
    api.tick()
    # The broker restarts between two attempts: the kept connection is dead, the broker
    # is back by the time of the next attempt.
    through.stop()
    through.start()
    created = api.enqueue(url)
    api.tick()
    after = api.task(created["id"])
    assert (after["status"], after["attempts"]) == ("resolved", 1)
    assert through.accepted == 2
    assert len(broker.all(queue)) == 2


def test_a_kept_connection_that_dies_under_the_publish_is_replaced(api, broker, proxy) -> None:
    through = proxy()
    queue = broker.queue()
    url = f"{broker.url(port=through.port)}?routing_key={queue}"
    api.enqueue(url)
    api.tick()
    through.cut_on_next_send.set()  # looks alive when taken; dies as the message goes out
    created = api.enqueue(url)
    api.tick()
    after = api.task(created["id"])
    assert (after["status"], after["attempts"]) == ("resolved", 1)
    assert through.accepted == 2
    assert [p.message_id for p, _ in broker.all(queue)][-1] == created["id"]


def test_a_connection_cut_during_the_handshake_fails_the_attempt(api, broker, proxy) -> None:
    through = proxy()
    through.cut_on_next_send.set()  # the protocol header: the connection dies at once
    created = api.enqueue(f"{broker.url(port=through.port)}?routing_key=q")
    api.tick()
    error = api.task(created["id"])["lastError"]
    assert error.startswith("the connection closed during the AMQP handshake")


# -- the deadline -----------------------------------------------------------------------------


def test_a_server_that_never_speaks_times_out_within_the_callback_timeout(api, silent) -> None:
    api.config(http_callback_timeout_ms=800)
    created = api.enqueue(f"amqp://guest:guest@127.0.0.1:{silent.port}/?routing_key=q")
    took = api.tick()
    after = api.task(created["id"])
    assert after["status"] == "pending"
    assert after["lastError"] == (
        "timeout: the connection to the broker did not open within the 800 ms callback timeout"
    )
    [record] = api.attempts(created["id"])
    assert 700 <= record["durationMs"] <= 1100
    assert took < 2.0


def test_no_confirm_before_the_deadline_is_a_timed_out_attempt(api, broker, proxy) -> None:
    through = proxy()
    queue = broker.queue()
    url = f"{broker.url(port=through.port)}?routing_key={queue}"
    api.enqueue(url)
    api.tick()  # the connection is open and kept
    api.config(http_callback_timeout_ms=600, retry_backoff_ms=0)
    through.frozen.set()  # the broker's answers (the confirm) are held back from now on
    created = api.enqueue(url)
    took = api.tick()
    after = api.task(created["id"])
    assert after["lastError"] == (
        "timeout: no publisher confirm from the broker within the 600 ms callback timeout"
    )
    [record] = api.attempts(created["id"])
    assert record["durationMs"] <= 900
    assert took < 2.0
    through.frozen.clear()
    # The connection whose confirm never came is not used again; the retry delivers.
    api.tick()
    assert api.task(created["id"])["status"] == "resolved"
    assert through.accepted == 2


def test_nothing_is_published_once_the_deadline_has_passed(broker) -> None:
    from types import MappingProxyType

    from scheduler_core.models import Callback

    from scheduler_core_amqp.delivery import publish

    queue = broker.queue()
    callback = Callback(
        url=f"{broker.url()}?routing_key={queue}",
        headers=MappingProxyType({"Content-Type": "application/json"}),
        body=b"{}",
        task_id="t-late",
    )
    report = publish(callback, time.monotonic() - 0.001)
    assert report.timed_out and report.sent_at is None
    assert broker.all(queue) == []


# -- the target policy ------------------------------------------------------------------------


def test_the_target_policy_is_checked_at_connect(api, broker) -> None:
    queue = broker.queue()
    created = api.enqueue(f"amqp://guest:guest@localhost:5672/?routing_key={queue}")
    # The policy closes loopback after the enqueue: the name's addresses decide at delivery.
    targets.set_policy(targets.TargetPolicy.from_settings(None, "127.0.0.0/8, ::1/128"))
    api.tick()
    error = api.task(created["id"])["lastError"]
    assert error.startswith("target refused: localhost (")
    assert "SCHEDULER_DENIED_TARGETS" in error
    assert broker.all(queue) == []


def test_a_kept_connection_is_checked_against_the_policy_in_force(api, broker) -> None:
    queue = broker.queue()
    url = f"{broker.url()}?routing_key={queue}"
    api.enqueue(url)
    api.tick()
    assert pool.idle_links(parse(url).broker_key) == 1
    created = api.enqueue(url)
    targets.set_policy(targets.TargetPolicy.from_settings(None, "127.0.0.1"))
    api.tick()
    assert api.task(created["id"])["lastError"].startswith("target refused: 127.0.0.1 is denied")
    assert len(broker.all(queue)) == 1


# -- TLS --------------------------------------------------------------------------------------


def test_amqps_verifies_the_certificate_for_the_name_in_the_url(
    api, broker, proxy, certificates, monkeypatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    front = proxy(tls=certificates.server("localhost"))
    queue = broker.queue()
    created = api.enqueue(f"amqps://guest:guest@localhost:{front.port}/?routing_key={queue}")
    api.tick()
    assert api.task(created["id"])["status"] == "resolved"
    [(properties, _)] = broker.all(queue)
    assert properties.message_id == created["id"]


def test_amqps_refuses_a_certificate_for_another_name(
    api, broker, proxy, certificates, monkeypatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    front = proxy(tls=certificates.server("broker.example"))
    queue = broker.queue()
    created = api.enqueue(f"amqps://guest:guest@localhost:{front.port}/?routing_key={queue}")
    api.tick()
    error = api.task(created["id"])["lastError"]
    assert error.startswith("tls error: SSLCertVerificationError")
    assert "localhost" in error  # the name checked is the URL's, not the address
    assert broker.all(queue) == []


def test_amqps_refuses_an_unknown_issuer(api, broker, proxy, certificates) -> None:
    front = proxy(tls=certificates.server("localhost"))  # no SSL_CERT_FILE: CA not trusted
    created = api.enqueue(f"amqps://guest:guest@localhost:{front.port}/?routing_key=q")
    api.tick()
    assert "certificate verify failed" in api.task(created["id"])["lastError"]


@pytest.mark.parametrize("scheme", ["amqp", "amqps"])
def test_connection_refused(api, scheme) -> None:
    import socket

    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    created = api.enqueue(f"{scheme}://guest:guest@127.0.0.1:{port}/?routing_key=q")
    api.tick()
    assert api.task(created["id"])["lastError"] == "connection refused"
