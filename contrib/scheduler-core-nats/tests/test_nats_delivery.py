"""nats:// tasks, enqueued through the core's API and delivered by its dispatcher to a real
NATS JetStream, read back from the stream."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask.testing import FlaskClient
from nats_support import (
    CuttingProxy,
    JetStream,
    MuteBroker,
    NatsServer,
    SilentListener,
    attempts,
    enqueue,
    set_config,
    task,
    wait_for_jetstream,
)
from standardwebhooks.webhooks import Webhook

import scheduler_core_nats
from scheduler_core import targets
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.models import Callback
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store

SECRET = "whsec_x6fUI2o6p4RhN5XbXh8EqfvSUiIpiPopZZqpjXkzGXY="


def test_the_callback_lands_in_the_stream_as_built(
    client: FlaskClient, dispatcher: Dispatcher, jetstream: JetStream, shared_url: str
) -> None:
    stream = jetstream.add_stream()
    created = enqueue(
        client,
        f"{shared_url}/{stream.subject}",
        payload={"order": 42, "note": "é"},
        webhookAuth="Bearer t0ken-for-receiver",
    )

    dispatcher.tick()

    done = task(client, created["id"])
    assert done["status"] == "resolved", done["lastError"]
    assert done["lastError"] is None
    [attempt] = attempts(client, created["id"])
    assert attempt["outcome"] == "resolved"
    [message] = jetstream.messages(stream)
    assert json.loads(message.data or b"") == {
        "taskId": created["id"],
        "executeAt": created["executeAt"],
        "attempt": 1,
        "payload": {"order": 42, "note": "é"},
    }
    headers = message.headers or {}
    assert list(headers) == [
        "Content-Type",
        "User-Agent",
        "X-Scheduler-Task-Id",
        "X-Scheduler-Attempt",
        "Authorization",
        "X-Scheduler-Complete-Url",
        "X-Scheduler-Fail-Url",
        "Nats-Msg-Id",
    ]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("scheduler-core/")
    assert headers["X-Scheduler-Task-Id"] == created["id"]
    assert headers["X-Scheduler-Attempt"] == "1"
    assert headers["Authorization"] == "Bearer t0ken-for-receiver"
    assert headers["Nats-Msg-Id"] == f"{created['id']}:1"


@pytest.fixture
def signed_settings(settings: Settings) -> Settings:
    return Settings(
        database_url=settings.database_url, load_entry_points=False, signing_secrets=(SECRET,)
    )


def test_a_signed_callback_verifies_from_the_stream(
    signed_settings: Settings, store: Store, jetstream: JetStream, shared_url: str
) -> None:
    """The body bytes and the Standard Webhooks headers travel unchanged: a receiver
    verifies the message with any Standard Webhooks library."""
    from scheduler_core.api import create_app

    plugins = PluginManager(signed_settings, extra_plugins=(scheduler_core_nats,))
    client = create_app(
        signed_settings, store=store, plugins=plugins, test_config={"TESTING": True}
    ).test_client()
    dispatcher = Dispatcher(store, plugins)
    stream = jetstream.add_stream()
    created = enqueue(client, f"{shared_url}/{stream.subject}", payload=[1, 2.50, "x"])
    try:
        dispatcher.tick()
    finally:
        dispatcher.stop(wait=True)

    assert task(client, created["id"])["status"] == "resolved"
    [message] = jetstream.messages(stream)
    headers = dict(message.headers or {})
    assert headers["webhook-id"] == created["id"]
    assert Webhook(SECRET).verify(message.data or b"", headers)["payload"] == [1, 2.50, "x"]
    task_id, execute_at = created["id"], created["executeAt"]
    assert (
        message.data
        == (  # the envelope's bytes exactly
            f'{{"taskId": "{task_id}", "executeAt": "{execute_at}", '
            f'"attempt": 1, "payload": [1, 2.5, "x"]}}'
        ).encode()
    )


def test_no_stream_for_the_subject_is_a_failed_attempt(
    client: FlaskClient, dispatcher: Dispatcher, store: Store, shared_url: str
) -> None:
    set_config(store, max_retries=1, retry_backoff_ms=0)
    created = enqueue(client, f"{shared_url}/scn.nobody-listens.{time.monotonic_ns()}")

    dispatcher.tick()
    dispatcher.tick()

    done = task(client, created["id"])
    assert done["status"] == "stale"
    assert done["attempts"] == 2
    assert "no JetStream stream for subject" in done["lastError"]
    assert [a["outcome"] for a in attempts(client, created["id"])] == ["failed", "failed"]


def test_a_stream_mismatch_is_jetstreams_refusal(
    client: FlaskClient, dispatcher: Dispatcher, jetstream: JetStream, shared_url: str
) -> None:
    stream = jetstream.add_stream()
    created = enqueue(client, f"{shared_url}/{stream.subject}?stream=SOME_OTHER_STREAM")

    dispatcher.tick()

    done = task(client, created["id"])
    assert done["status"] == "pending"
    assert done["lastError"].startswith("JetStream refused the message: ")
    assert "err_code 10060" in done["lastError"]  # expected stream does not match
    assert jetstream.messages(stream) == []


def test_the_named_stream_is_checked(
    client: FlaskClient, dispatcher: Dispatcher, jetstream: JetStream, shared_url: str
) -> None:
    stream = jetstream.add_stream()
    created = enqueue(client, f"{shared_url}/{stream.subject}?stream={stream.name}")

    dispatcher.tick()

    assert task(client, created["id"])["status"] == "resolved"
    [message] = jetstream.messages(stream)
    assert (message.headers or {})["Nats-Expected-Stream"] == stream.name


def test_a_url_without_a_subject_fails_with_a_clear_error(
    client: FlaskClient, dispatcher: Dispatcher, shared_url: str
) -> None:
    created = enqueue(client, f"{shared_url}/")

    dispatcher.tick()

    assert task(client, created["id"])["lastError"] == (
        "invalid nats URL: the path must name a subject: nats://host:port/subject"
    )


def test_a_retry_is_a_new_message_not_a_duplicate(
    client: FlaskClient, dispatcher: Dispatcher, store: Store, jetstream: JetStream, shared_url: str
) -> None:
    """Each attempt has its own Nats-Msg-Id, so JetStream's de-duplication never drops a
    retry because an earlier attempt of the task failed."""
    set_config(store, max_retries=0)
    subject = f"scn.later.{time.monotonic_ns()}"
    created = enqueue(client, f"{shared_url}/{subject}")
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "stale"
    stream = jetstream.add_stream(subject=subject)
    assert client.post(f"/api/v1/tasks/{created['id']}/retry").status_code == 200

    dispatcher.tick()

    assert task(client, created["id"])["status"] == "resolved"
    [message] = jetstream.messages(stream)
    assert (message.headers or {})["Nats-Msg-Id"] == f"{created['id']}:2"
    assert json.loads(message.data or b"")["attempt"] == 2


def test_many_tasks_share_one_connection(
    client: FlaskClient,
    dispatcher: Dispatcher,
    store: Store,
    jetstream: JetStream,
    shared_url: str,
) -> None:
    set_config(store, select_size=200)
    stream = jetstream.add_stream()
    ids = {enqueue(client, f"{shared_url}/{stream.subject}")["id"] for _ in range(100)}

    dispatcher.tick()

    assert {task(client, i)["status"] for i in ids} == {"resolved"}
    messages = jetstream.messages(stream)
    assert {(m.headers or {})["X-Scheduler-Task-Id"] for m in messages} == ids
    assert len(scheduler_core_nats.publisher()._connections) == 1


# -- a broker of the test's own: down, back, credentials ---------------------------------


def test_broker_down_fails_the_attempt_and_the_retry_delivers_once_it_is_back(
    client: FlaskClient, dispatcher: Dispatcher, store: Store, nats_server: NatsServer
) -> None:
    set_config(store, retry_backoff_ms=0)
    nats_server.start()
    admin = JetStream(nats_server.url())
    stream = admin.add_stream()
    admin.close()
    before = enqueue(client, f"{nats_server.url()}/{stream.subject}")
    dispatcher.tick()  # a kept connection now exists
    assert task(client, before["id"])["status"] == "resolved"

    nats_server.stop()
    created = enqueue(client, f"{nats_server.url()}/{stream.subject}")
    dispatcher.tick()

    down = task(client, created["id"])
    assert down["status"] == "pending"
    assert down["lastError"] == (
        f"could not connect to the broker at {nats_server.address}: connection refused"
    )

    nats_server.start()
    wait_for_jetstream(nats_server.url(), stream)
    dispatcher.tick()

    assert task(client, created["id"])["status"] == "resolved"
    admin = JetStream(nats_server.url())
    try:
        messages = admin.messages(stream)
    finally:
        admin.close()
    assert [(m.headers or {})["Nats-Msg-Id"] for m in messages] == [
        f"{before['id']}:1",
        f"{created['id']}:2",
    ]


def test_a_connection_lost_mid_publish_fails_the_attempt_at_once() -> None:
    """The broker going away while a PubAck is awaited fails the attempt when the
    connection closes, not when the deadline passes."""
    mute = MuteBroker()
    try:
        url = f"nats://127.0.0.1:{mute.port}/orders.created"
        callback = Callback(url=url, headers={}, body=b"{}", task_id="t", attempt=1)
        deadline = time.monotonic() + 10
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(scheduler_core_nats.scheduler_deliver, callback, deadline)
            while not mute.published:
                time.sleep(0.01)
            mute.close()
            report = pending.result(timeout=5)
    finally:
        mute.close()
    assert report is not None
    assert time.monotonic() < deadline - 5
    assert report.error is not None
    assert "closed the connection before the PubAck" in report.error
    assert not report.timed_out


@pytest.mark.parametrize("reached_the_broker", [False, True])
def test_a_kept_connection_that_died_is_replaced_and_the_message_stored_once(
    nats_server: NatsServer, reached_the_broker: bool
) -> None:
    """A kept connection that breaks under a publish: the message goes again on a new
    connection within the same attempt, and when the first copy had reached the stream,
    JetStream drops the second by its Nats-Msg-Id."""
    nats_server.start()
    admin = JetStream(nats_server.url())
    stream = admin.add_stream()
    proxy = CuttingProxy(nats_server.port)
    url = f"nats://127.0.0.1:{proxy.port}/{stream.subject}"
    try:
        first = Callback(url=url, headers={}, body=b"1", task_id="first", attempt=1)
        assert scheduler_core_nats.scheduler_deliver(first, time.monotonic() + 5) is not None
        proxy.cut_next_publish(forward=reached_the_broker)

        second = Callback(url=url, headers={}, body=b"2", task_id="second", attempt=1)
        report = scheduler_core_nats.scheduler_deliver(second, time.monotonic() + 5)

        assert report is not None
        assert report.error is None
        assert (proxy.cuts, proxy.connections) == (1, 2)
        assert [m.data for m in admin.messages(stream)] == [b"1", b"2"]
    finally:
        proxy.close()
        admin.close()


def test_credentials_work_and_never_show_in_last_error(
    client: FlaskClient, dispatcher: Dispatcher, nats_server: NatsServer
) -> None:
    password = "s3cret-Passw0rd"
    nats_server.start("--user", "scheduler", "--pass", password)
    admin = JetStream(nats_server.url(), user="scheduler", password=password)
    stream = admin.add_stream()

    good = enqueue(client, f"{nats_server.url(f'scheduler:{password}')}/{stream.subject}")
    wrong = "wr0ng-Passw0rd-9"
    bad = enqueue(client, f"{nats_server.url(f'scheduler:{wrong}')}/{stream.subject}")
    dispatcher.tick()

    try:
        assert task(client, good["id"])["status"] == "resolved"
        assert len(admin.messages(stream)) == 1
    finally:
        admin.close()
    refused = task(client, bad["id"])
    assert refused["status"] == "pending"
    assert refused["lastError"] == (
        f"the broker at {nats_server.address} refused the credentials (authorization violation)"
    )
    shown = json.dumps([refused, attempts(client, bad["id"]), task(client, good["id"])])
    for secret in (password, wrong, "scheduler:"):
        assert secret not in shown


def test_a_token_in_the_url_authenticates(
    client: FlaskClient, dispatcher: Dispatcher, nats_server: NatsServer
) -> None:
    token = "t0ken-0f-the-broker"
    nats_server.start("--auth", token)
    admin = JetStream(nats_server.url(), token=token)
    stream = admin.add_stream()
    try:
        good = enqueue(client, f"{nats_server.url(token)}/{stream.subject}")
        bad = enqueue(client, f"{nats_server.url('n0t-the-t0ken')}/{stream.subject}")
        dispatcher.tick()

        assert task(client, good["id"])["status"] == "resolved"
        assert len(admin.messages(stream)) == 1
    finally:
        admin.close()
    assert "authorization violation" in task(client, bad["id"])["lastError"]
    assert "n0t-the-t0ken" not in json.dumps(task(client, bad["id"]))


def test_a_publish_the_broker_forbids_fails_at_once(
    client: FlaskClient, dispatcher: Dispatcher, nats_server: NatsServer
) -> None:
    nats_server.config(
        """
        authorization {
          users = [
            {user: admin, password: admin-pass}
            {user: limited, password: limited-pass,
             permissions: {publish: {deny: ["forbidden.>"]}}}
          ]
        }
        """
    )
    nats_server.start()
    admin = JetStream(nats_server.url(), user="admin", password="admin-pass")
    stream = admin.add_stream(subject="forbidden.Orders")
    try:
        created = enqueue(client, f"{nats_server.url('limited:limited-pass')}/forbidden.Orders")
        started = time.monotonic()
        dispatcher.tick()
        took = time.monotonic() - started
        assert admin.messages(stream) == []
    finally:
        admin.close()
    error = task(client, created["id"])["lastError"]
    assert error.startswith(
        f"the broker at {nats_server.address} refused the publish to 'forbidden.Orders': "
    )
    assert "permissions violation" in error
    assert "limited-pass" not in error
    assert took < 2  # not the 5 s callback timeout


def test_a_message_over_max_payload_is_refused_before_sending(
    client: FlaskClient, dispatcher: Dispatcher, nats_server: NatsServer
) -> None:
    nats_server.config("max_payload: 2048\n")
    nats_server.start()
    admin = JetStream(nats_server.url())
    stream = admin.add_stream()
    try:
        small = enqueue(client, f"{nats_server.url()}/{stream.subject}", payload="x" * 100)
        big = enqueue(client, f"{nats_server.url()}/{stream.subject}", payload="x" * 4000)
        dispatcher.tick()

        assert task(client, small["id"])["status"] == "resolved"
        assert len(admin.messages(stream)) == 1
    finally:
        admin.close()
    error = task(client, big["id"])["lastError"]
    assert "is over the broker's max_payload (2048 bytes)" in error


# -- the deadline and the target policy -------------------------------------------------


def test_a_broker_that_never_speaks_times_out_within_the_callback_timeout(
    client: FlaskClient, dispatcher: Dispatcher, store: Store
) -> None:
    set_config(store, http_callback_timeout_ms=700)
    silent = SilentListener()
    try:
        created = enqueue(client, f"nats://127.0.0.1:{silent.port}/orders.created")
        started = time.monotonic()
        dispatcher.tick()
        took = time.monotonic() - started
        assert silent.connections >= 1
    finally:
        silent.close()

    done = task(client, created["id"])
    assert done["lastError"] == (
        "timeout: could not connect to the broker within the 700 ms callback timeout"
    )
    [attempt] = attempts(client, created["id"])
    assert attempt["outcome"] == "failed"
    assert 650 <= attempt["durationMs"] <= 1100
    assert took < 2


def test_no_pub_ack_before_the_deadline_is_a_timed_out_attempt(
    client: FlaskClient, dispatcher: Dispatcher, store: Store
) -> None:
    set_config(store, http_callback_timeout_ms=600)
    mute = MuteBroker()
    try:
        created = enqueue(client, f"nats://127.0.0.1:{mute.port}/orders.created")
        dispatcher.tick()
    finally:
        mute.close()

    assert [subject for subject, _ in mute.published] == ["orders.created"]
    assert task(client, created["id"])["lastError"] == (
        "timeout: no PubAck from JetStream within the 600 ms callback timeout"
    )
    [attempt] = attempts(client, created["id"])
    assert 550 <= attempt["durationMs"] <= 1000
    assert attempt["latenessMs"] is not None


def test_nothing_is_sent_after_the_deadline() -> None:
    mute = MuteBroker()
    try:
        callback = Callback(
            url=f"nats://127.0.0.1:{mute.port}/late.subject", headers={}, body=b"{}"
        )
        report = scheduler_core_nats.scheduler_deliver(callback, time.monotonic() - 0.001)
        time.sleep(0.2)
    finally:
        mute.close()
    assert report is not None
    assert report.timed_out
    assert report.error == "the attempt did not start"
    assert mute.published == []


def test_the_target_policy_is_checked_against_the_resolved_addresses(
    client: FlaskClient, dispatcher: Dispatcher, jetstream: JetStream, shared_url: str
) -> None:
    stream = jetstream.add_stream()
    port = shared_url.rpartition(":")[2]
    created = enqueue(client, f"nats://localhost:{port}/{stream.subject}")
    # Denied after the enqueue check passed: the connect-time check must refuse it.
    targets.set_policy(targets.TargetPolicy.from_settings(None, "127.0.0.0/8, ::1"))

    dispatcher.tick()

    error = task(client, created["id"])["lastError"]
    assert error.startswith("target refused: localhost (")
    assert "SCHEDULER_DENIED_TARGETS" in error
    assert jetstream.messages(stream) == []


def test_link_local_brokers_are_refused_at_enqueue(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/tasks", json={"webhookUrl": "nats://169.254.169.254:4222/metadata.steal"}
    )
    assert response.status_code == 400
