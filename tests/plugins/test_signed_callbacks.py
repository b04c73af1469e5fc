"""Signed callbacks (SPEC "The callback", "Security"): with SCHEDULER_SIGNING_SECRET set, a
receiver verifies every callback with a Standard Webhooks library. The checks here use the
`standardwebhooks` package from PyPI, not the project's own code, on what a real receiver
on 127.0.0.1 got from a real dispatcher tick."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

import scheduler_core
from scheduler_core.models import DeliveryReport
from scheduler_core.settings import Settings
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task

NEW = "whsec_x6fUI2o6p4RhN5XbXh8EqfvSUiIpiPopZZqpjXkzGXY="
OLD = "whsec_xMKSIa75tMxeNyNEtKMhcazkggaWH0sEOcjuHzMX0Yg="
STRANGER = "whsec_i343DYVs5sF/TGU7sTyTi2D/kusawiEK/reiTcDbiLk="
# A payload whose bytes a re-serialization would change: key order, spacing, escapes,
# non-ASCII, number spellings.
PAYLOAD_JSON = '{"z": 1.50, "a": [1e3, "\\u00e9t\\u00e9"], "émoji": "🚀",   "n": null}'
V1 = re.compile(r"v1,[A-Za-z0-9+/]{43}=")


@pytest.fixture
def signing_secrets() -> tuple[str, ...]:
    return (NEW,)


@pytest.fixture
def settings(clean_database: str, signing_secrets: tuple[str, ...]) -> Settings:
    return Settings(
        database_url=clean_database, load_entry_points=False, signing_secrets=signing_secrets
    )


def _enqueue_raw_payload(client, url: str, **fields) -> dict:
    """Enqueue with the payload as raw JSON text, so its exact spelling is what's stored."""
    body = json.dumps({"webhookUrl": url, **fields})[:-1] + f', "payload": {PAYLOAD_JSON}}}'
    response = client.post("/api/v1/tasks", data=body, content_type="application/json")
    assert response.status_code == 201, response.json
    return response.json


def test_every_callback_is_signed_in_the_standard_webhooks_format(client, dispatcher, receiver):
    created = _enqueue_raw_payload(client, receiver.url("/signed"))
    before = int(time.time())
    dispatcher.tick()
    after = time.time()
    [call] = receiver.calls("/signed")

    verified = Webhook(NEW).verify(call.body, call.headers)

    assert verified == json.loads(call.body)
    assert verified["taskId"] == created["id"]
    assert verified["attempt"] == 1
    assert verified["payload"] == json.loads(PAYLOAD_JSON)
    assert call.header("webhook-id") == created["id"]
    assert before <= int(call.header("webhook-timestamp")) <= after
    assert V1.fullmatch(call.header("webhook-signature"))
    assert task(client, created["id"])["status"] == "resolved"


@pytest.mark.parametrize("signing_secrets", [(NEW, OLD)], ids=["new+old"])
def test_during_a_rotation_each_secret_alone_verifies(client, dispatcher, receiver):
    enqueue(client, receiver.url("/rotating"), payload={"k": "v"})
    dispatcher.tick()
    [call] = receiver.calls("/rotating")

    signatures = call.header("webhook-signature").split(" ")
    assert len(signatures) == 2 and all(V1.fullmatch(s) for s in signatures)
    assert Webhook(NEW).verify(call.body, call.headers)["payload"] == {"k": "v"}
    assert Webhook(OLD).verify(call.body, call.headers)["payload"] == {"k": "v"}
    with pytest.raises(WebhookVerificationError):
        Webhook(STRANGER).verify(call.body, call.headers)


def test_a_callback_changed_on_the_way_fails_verification(client, dispatcher, receiver):
    enqueue(client, receiver.url("/tampered"), payload={"amount": 100})
    dispatcher.tick()
    [call] = receiver.calls("/tampered")
    Webhook(NEW).verify(call.body, call.headers)  # as sent, it verifies

    tampered_body = call.body.replace(b'"amount": 100', b'"amount": 900')
    assert tampered_body != call.body
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(tampered_body, call.headers)
    with pytest.raises(WebhookVerificationError):  # one extra space is a change too
        Webhook(NEW).verify(call.body + b" ", call.headers)
    other_id = {**call.headers, "webhook-id": "0" * 32}
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(call.body, other_id)
    later = {**call.headers, "webhook-timestamp": str(int(call.header("webhook-timestamp")) + 1)}
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(call.body, later)


def test_retries_keep_the_webhook_id_and_each_attempt_is_signed_anew(
    client, dispatcher, receiver, store
):
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/flaky", statuses=[500, 503, 200])
    created = enqueue(client, receiver.url("/flaky"), payload=[1, 2])
    windows = []
    for _ in range(3):
        started = int(time.time())
        dispatcher.tick()
        windows.append((started, time.time()))
    calls = receiver.wait_for(3, "/flaky")

    assert task(client, created["id"])["status"] == "resolved"
    assert [c.header("webhook-id") for c in calls] == [created["id"]] * 3
    bodies = [Webhook(NEW).verify(c.body, c.headers) for c in calls]
    assert [b["attempt"] for b in bodies] == [1, 2, 3]
    assert [c.header("X-Scheduler-Attempt") for c in calls] == ["1", "2", "3"]
    for call, (started, ended) in zip(calls, windows, strict=True):
        assert started <= int(call.header("webhook-timestamp")) <= ended  # its own send time
    assert len({c.header("webhook-signature") for c in calls}) == 3


def test_a_transport_plugin_carries_the_same_signed_headers(client, dispatcher, plugins):
    sent = []

    class Broker:
        @scheduler_core.hookimpl
        def scheduler_delivery_schemes(self):
            return ["queue"]

        @scheduler_core.hookimpl
        def scheduler_deliver(self, callback):
            if not callback.url.startswith("queue:"):
                return None
            sent.append(callback)
            return DeliveryReport.accepted()

    plugins.register(Broker())
    created = enqueue(client, "queue://broker/jobs", payload={"b": 1})
    dispatcher.tick()
    [callback] = sent

    names = list(callback.headers)
    assert names[-3:] == ["webhook-id", "webhook-timestamp", "webhook-signature"]
    assert callback.headers["webhook-id"] == created["id"]
    assert Webhook(NEW).verify(callback.body, dict(callback.headers))["payload"] == {"b": 1}


@pytest.mark.parametrize("signing_secrets", [()], ids=["unset"])
def test_without_a_secret_callbacks_carry_no_webhook_headers(client, dispatcher, receiver):
    enqueue(client, receiver.url("/plain"))
    dispatcher.tick()
    [call] = receiver.calls("/plain")
    assert not [name for name in call.headers if name.lower().startswith("webhook-")]


@pytest.mark.parametrize("signing_secrets", [(NEW, OLD)], ids=["new+old"])
def test_signing_secrets_never_show_in_logs_or_responses(
    client, dispatcher, receiver, store, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/down", statuses=[500], body=b"no")
    created = enqueue(client, receiver.url("/down"), maxRetries=1)
    dispatcher.tick()
    dispatcher.tick()
    receiver.wait_for(2, "/down")

    texts = [caplog.text, repr(settings), repr(caplog.records)]
    for path in (f"/api/v1/tasks/{created['id']}", f"/api/v1/tasks/{created['id']}/attempts"):
        response = client.get(path)
        texts += [response.get_data(as_text=True), str(response.headers)]
    texts.append(json.dumps(attempts(client, created["id"])))
    for secret in (NEW, OLD):
        for text in texts:
            assert secret not in text
            assert secret.removeprefix("whsec_")[:12] not in text


# -- a malformed secret refuses to start, without printing it --------------------------------

MALFORMED = {
    "no prefix": "x6fUI2o6p4RhN5XbXh8EqfvSUiIpiPopZZqpjXkzGXY=",
    "not base64": "whsec_x6fUI2o6p4RhN5Xb!h8EqfvSUiIpiPopZZqpjXkzGXY=",
    "url-safe alphabet": "whsec_x6fUI2o6p4RhN5XbXh8EqfvSUiIpiPopZZqpjXkz_-Y=",
    "too short": "whsec_c2hvcnQtc2VjcmV0",
    "empty key": "whsec_",
}


@pytest.mark.parametrize("bad", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_secret_is_refused_with_a_clear_error_that_hides_it(monkeypatch, bad):
    monkeypatch.setenv("SCHEDULER_SIGNING_SECRET", f"{NEW} {bad}")
    with pytest.raises(ValueError) as refused:
        Settings.from_env("sqlite:///unused.db")
    message = str(refused.value)
    assert message.startswith("SCHEDULER_SIGNING_SECRET: secret 2 of 2 ")
    for secret in (NEW, bad):
        if secret.removeprefix("whsec_"):
            assert secret.removeprefix("whsec_")[:8] not in message


def test_the_setting_takes_several_secrets_separated_by_spaces(monkeypatch):
    monkeypatch.setenv("SCHEDULER_SIGNING_SECRET", f"  {NEW}\t{OLD}  ")
    assert Settings.from_env("sqlite:///unused.db").signing_secrets == (NEW, OLD)
    monkeypatch.setenv("SCHEDULER_SIGNING_SECRET", " ")
    assert Settings.from_env("sqlite:///unused.db").signing_secrets == ()


@pytest.mark.slow
def test_the_worker_refuses_to_start_with_a_malformed_secret(tmp_path):
    bad = "whsec_x6fUI2o6p4RhN5Xb!h8EqfvSUiIpiPopZZqpjXkzGXY="
    result = subprocess.run(
        [sys.executable, "-m", "scheduler_core.cli", "worker"],
        env={
            "PATH": "/usr/bin:/bin",
            "SCHEDULER_SIGNING_SECRET": bad,
            "SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
            "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "SCHEDULER_SIGNING_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
    assert "x6fUI2o6" not in result.stderr + result.stdout
