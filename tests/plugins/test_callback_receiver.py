"""The receiver helper, scheduler_core.receiver: a receiver hands it the raw body and the
headers and gets the callback back, or a clear error. Signed test messages are made with
the `standardwebhooks` package, not with the project's signer; the Flask decorator is
checked behind a real HTTP server that a real dispatcher calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server

from scheduler_core.receiver import (
    CallbackVerificationError,
    CallbackVerifier,
    InvalidSigningSecret,
    verified_callback,
    verify_callback,
)
from scheduler_core.settings import Settings
from tests.dispatch.helpers import enqueue, task
from tests.plugins.test_signed_callbacks import NEW, OLD, STRANGER

TASK_ID = "0f8c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5"
BODY = (
    f'{{"taskId": "{TASK_ID}", "executeAt": "2030-01-01T00:00:00Z", "attempt": 2, '
    '"payload": {"z": 1.50, "é": [1, 2]}}'
).encode()


def signed(
    body: bytes = BODY,
    secrets: tuple[str, ...] = (NEW,),
    at: float | None = None,
    message_id: str = TASK_ID,
) -> dict[str, str]:
    """Headers as a Standard Webhooks sender makes them, by the standardwebhooks package."""
    timestamp = int(time.time() if at is None else at)
    moment = datetime.fromtimestamp(timestamp, UTC)
    signatures = [Webhook(s).sign(message_id, moment, body.decode()) for s in secrets]
    return {
        "Webhook-Id": message_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": " ".join(signatures),
        "Content-Type": "application/json",
    }


def refused(reason: str, body: bytes | str, headers, secrets, **kwargs) -> str:
    with pytest.raises(CallbackVerificationError) as raised:
        verify_callback(body, headers, secrets, **kwargs)
    assert raised.value.reason == reason
    assert isinstance(raised.value, WebhookVerificationError)  # the library's error, too
    message = str(raised.value)
    for secret in (NEW, OLD, STRANGER):
        assert secret.removeprefix("whsec_")[:8] not in message
    return message


def test_a_good_callback_returns_its_parsed_body():
    callback = verify_callback(BODY, signed(), NEW)
    assert callback == json.loads(BODY)
    assert (callback["taskId"], callback["attempt"]) == (TASK_ID, 2)
    assert verify_callback(BODY.decode(), signed(), NEW) == callback  # str body too


def test_header_names_are_read_in_any_letter_case():
    headers = {name.upper(): value for name, value in signed().items()}
    assert verify_callback(BODY, headers, NEW)["taskId"] == TASK_ID


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.replace(b'"attempt": 2', b'"attempt": 3'),
        lambda b: b.replace(b"1.50", b"1.5"),  # the same JSON value, not the same bytes
        lambda b: b + b"\n",
        lambda b: b"\xff" + b,  # not even UTF-8
    ],
    ids=["value", "spelling", "trailing newline", "not utf-8"],
)
def test_a_tampered_body_is_refused(change):
    message = refused("bad-signature", change(BODY), signed(), NEW)
    assert "signature" in message or "signed" in message


def test_a_changed_id_or_timestamp_is_refused():
    headers = signed()
    refused("bad-signature", BODY, {**headers, "Webhook-Id": "another"}, NEW)
    moved = str(int(headers["Webhook-Timestamp"]) - 1)
    refused("bad-signature", BODY, {**headers, "Webhook-Timestamp": moved}, NEW)


def test_a_wrong_secret_is_refused():
    message = refused("bad-signature", BODY, signed(secrets=(STRANGER,)), NEW)
    assert "1 secret(s)" in message


def test_a_timestamp_outside_the_tolerance_is_refused():
    now = time.time()
    message = refused("too-old", BODY, signed(at=now - 301), NEW)
    assert "300 s tolerance" in message
    refused("too-new", BODY, signed(at=now + 301), NEW)
    # A wider tolerance lets the same message through; the clock can be given, too.
    assert verify_callback(BODY, signed(at=now - 301), NEW, tolerance_s=600)["attempt"] == 2
    old = signed(at=1_700_000_000)
    assert verify_callback(BODY, old, NEW, now=1_700_000_200)["taskId"] == TASK_ID
    refused("too-old", BODY, old, NEW, now=1_700_000_301)


@pytest.mark.parametrize(
    ("sent_with", "verified_with"),
    [
        ((OLD,), f"{NEW} {OLD}"),  # the receiver knows both while the sender still signs old
        ((OLD,), [NEW, OLD]),
        ((NEW, OLD), NEW),  # the sender signs with both; the receiver moved on
        ((NEW, OLD), OLD),  # ... or has not yet
    ],
    ids=["old-sent,both-known", "as a list", "both-sent,new-known", "both-sent,old-known"],
)
def test_rotated_secrets_verify_with_any_one_that_matches(sent_with, verified_with):
    assert verify_callback(BODY, signed(secrets=sent_with), verified_with)["taskId"] == TASK_ID


def test_missing_headers_are_named():
    headers = signed()
    del headers["Webhook-Signature"]
    message = refused("missing-headers", BODY, headers, NEW)
    assert "webhook-signature" in message
    refused("missing-headers", BODY, {"Content-Type": "application/json"}, NEW)


@pytest.mark.parametrize("value", ["12.5", "soon", "-5", ""])
def test_a_timestamp_that_is_not_integer_seconds_is_refused(value):
    headers = {**signed(), "Webhook-Timestamp": value}
    refused("missing-headers" if not value else "bad-timestamp", BODY, headers, NEW)


def test_garbage_signature_entries_are_skipped_not_crashed_on():
    headers = signed()
    good = headers["Webhook-Signature"]
    noisy = {**headers, "Webhook-Signature": f"v1,!!! nonsense v1a,AAAA v2,xyz {good}"}
    assert verify_callback(BODY, noisy, NEW)["attempt"] == 2
    only_garbage = {**headers, "Webhook-Signature": "v1,!!! nonsense v1"}
    refused("bad-signature", BODY, only_garbage, NEW)


def test_a_signed_body_that_is_not_a_json_object_is_refused():
    for body in (b"[1, 2]", b"not json"):
        refused("bad-body", body, signed(body=body), NEW)


@pytest.mark.parametrize(
    "secrets",
    ["", "   ", [], "x6fUI2o6p4RhN5XbXh8EqfvSUiIpiPopZZqpjXkzGXY=", f"{NEW} whsec_c2hvcnQ="],
    ids=["empty", "blank", "empty list", "no prefix", "second too short"],
)
def test_a_malformed_secret_is_refused_up_front_without_quoting_it(secrets):
    with pytest.raises(InvalidSigningSecret) as raised:
        CallbackVerifier(secrets)
    assert isinstance(raised.value, ValueError)
    assert "x6fUI2o6" not in str(raised.value)
    assert "c2hvcnQ" not in str(raised.value)
    assert "x6fUI2o6" not in repr(CallbackVerifier(NEW))


# -- the Flask decorator, behind a real server, called by a real dispatcher -------------------


class FlaskReceiver:
    """A Flask app on 127.0.0.1 whose /hook view is guarded by @verified_callback."""

    def __init__(self, secrets) -> None:
        self.callbacks: list[tuple[dict, str]] = []
        app = Flask(__name__)

        @app.post("/hook/<tenant>")
        @verified_callback(secrets)
        def hook(callback, tenant):
            self.callbacks.append((callback, tenant))
            return "", 204

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, tenant: str = "acme") -> str:
        return f"http://127.0.0.1:{self.port}/hook/{tenant}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flask_receivers() -> Iterator:
    made: list[FlaskReceiver] = []

    def make(secrets) -> FlaskReceiver:
        made.append(FlaskReceiver(secrets))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def settings(clean_database: str) -> Settings:
    return Settings(database_url=clean_database, load_entry_points=False, signing_secrets=(NEW,))


def test_the_flask_decorator_hands_the_view_a_verified_callback(
    client, dispatcher, flask_receivers
):
    receiver = flask_receivers(f"{OLD} {NEW}")
    created = enqueue(client, receiver.url("acme"), payload={"report": 7})
    dispatcher.tick()

    assert task(client, created["id"])["status"] == "resolved"
    [(callback, tenant)] = receiver.callbacks
    assert tenant == "acme"
    assert (callback["taskId"], callback["attempt"]) == (created["id"], 1)
    assert callback["payload"] == {"report": 7}


def test_the_flask_decorator_answers_401_and_the_task_shows_why(
    client, dispatcher, flask_receivers
):
    receiver = flask_receivers(STRANGER)  # not the scheduler's secret
    created = enqueue(client, receiver.url(), payload={"report": 7})
    dispatcher.tick()

    after = task(client, created["id"])
    assert (after["status"], after["lastStatusCode"]) == ("pending", 401)
    assert "bad-signature" in after["lastError"]
    assert receiver.callbacks == []  # the view never ran
