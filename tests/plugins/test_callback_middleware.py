"""The receiver helper's parsed callback, its plain function and its WSGI middleware: real
callbacks signed by a real dispatcher (SCHEDULER_SIGNING_SECRET), delivered over HTTP to
a receiver app behind the middleware."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from scheduler_core.receiver import (
    ENVIRON_KEY,
    CallbackMiddleware,
    CallbackVerificationError,
    CallbackVerifier,
    InvalidSigningSecret,
    ReceivedCallback,
    callback_from_environ,
    parse_callback,
    verified_callback,
)
from scheduler_core.settings import Settings
from tests.dispatch.helpers import enqueue, task
from tests.plugins.test_callback_receiver import BODY, TASK_ID, signed
from tests.plugins.test_signed_callbacks import NEW, OLD, STRANGER


@pytest.fixture
def settings(clean_database: str) -> Settings:
    return Settings(database_url=clean_database, load_entry_points=False, signing_secrets=(NEW,))


# -- the parsed callback and the plain function ---------------------------------------------


def test_parse_callback_hands_over_typed_fields() -> None:
    callback = parse_callback(BODY, signed(), NEW)

    assert isinstance(callback, ReceivedCallback)
    assert callback.task_id == TASK_ID
    assert callback.execute_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert callback.attempt == 2
    assert callback.payload == {"z": 1.5, "é": [1, 2]}
    # Still the body's mapping, as the dict of earlier versions.
    assert callback["taskId"] == TASK_ID and dict(callback) == json.loads(BODY)
    assert "payload" in callback and len(callback) == 4


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"executeAt": "2030-01-01T00:00:00Z", "attempt": 1, "payload": null}', "taskId"),
        (b'{"taskId": "t", "executeAt": "2030-01-01T00:00:00Z", "attempt": "1"}', "attempt"),
        (b'{"taskId": "t", "executeAt": "2030-01-01T00:00:00Z", "attempt": true}', "attempt"),
        (b'{"taskId": "t", "executeAt": "yesterday", "attempt": 1}', "executeAt"),
        (b'{"taskId": "t", "executeAt": "2030-01-01T00:00:00", "attempt": 1}', "executeAt"),
    ],
    ids=["no-task-id", "attempt-string", "attempt-bool", "time-word", "time-naive"],
)
def test_a_signed_body_without_the_callback_fields_is_refused(body: bytes, named: str) -> None:
    with pytest.raises(CallbackVerificationError) as raised:
        parse_callback(body, signed(body=body), NEW)
    assert raised.value.reason == "bad-body"
    assert named in str(raised.value)


def test_parse_refuses_what_verify_refuses() -> None:
    verifier = CallbackVerifier(NEW)
    with pytest.raises(CallbackVerificationError) as raised:
        verifier.parse(BODY, signed(secrets=(STRANGER,)))
    assert raised.value.reason == "bad-signature"


# -- the middleware, behind a real server, called by a real dispatcher ----------------------


class Served:
    """A WSGI app on 127.0.0.1 in a thread."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[..., Any]], Served]]:
    started: list[Served] = []

    def start(app: Callable[..., Any]) -> Served:
        started.append(Served(app))
        return started[-1]

    yield start
    for served in started:
        served.close()


class PlainApp:
    """A WSGI app with no framework: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ReceivedCallback | None, bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        self.seen.append((environ["PATH_INFO"], callback_from_environ(environ), body))
        start_response("204 No Content", [])
        return []


def test_the_middleware_hands_a_verified_callback_to_a_plain_wsgi_app(
    client, dispatcher, serve
) -> None:
    app = PlainApp()
    receiver = serve(CallbackMiddleware(app, f"{OLD} {NEW}", paths="/hooks/"))
    created = enqueue(client, f"{receiver.url}/hooks/report", payload={"report": 7})
    dispatcher.tick()

    assert task(client, created["id"])["status"] == "resolved"
    [(path, callback, body)] = app.seen
    assert path == "/hooks/report"
    assert callback is not None
    assert (callback.task_id, callback.attempt, callback.payload) == (
        created["id"],
        1,
        {"report": 7},
    )
    assert callback.execute_at == datetime.fromisoformat(created["executeAt"])
    assert json.loads(body) == dict(callback.body)  # the app can still read the body


def test_the_middleware_answers_401_before_the_app_sees_a_bad_callback(
    client, dispatcher, serve
) -> None:
    app = PlainApp()
    receiver = serve(CallbackMiddleware(app, STRANGER, paths="/hooks/"))
    created = enqueue(client, f"{receiver.url}/hooks/report")
    dispatcher.tick()

    after = task(client, created["id"])
    assert (after["status"], after["lastStatusCode"]) == ("pending", 401)
    assert "bad-signature" in after["lastError"]
    assert app.seen == []

    # Unsigned requests are refused too; paths it does not guard pass untouched.
    unsigned = requests.post(f"{receiver.url}/hooks/report", data=BODY, timeout=5)
    assert unsigned.status_code == 401
    assert unsigned.json()["reason"] == "missing-headers"
    assert requests.get(f"{receiver.url}/healthz", timeout=5).status_code == 204
    assert requests.post(f"{receiver.url}/hooksy", data=b"x", timeout=5).status_code == 204
    assert [(p, c) for p, c, _ in app.seen] == [("/healthz", None), ("/hooksy", None)]


def test_the_middleware_refuses_a_body_over_its_limit_unread(serve) -> None:
    app = PlainApp()
    receiver = serve(CallbackMiddleware(app, NEW, max_body_bytes=1000))
    big = BODY + b" " * 1000
    answer = requests.post(f"{receiver.url}/hook", data=big, headers=signed(body=big), timeout=5)
    assert answer.status_code == 413
    assert answer.json()["reason"] == "too-large"
    ok = requests.post(f"{receiver.url}/hook", data=BODY, headers=signed(), timeout=5)
    assert ok.status_code == 204
    assert app.seen[0][1] is not None and app.seen[0][1].task_id == TASK_ID


def test_the_middleware_wraps_a_flask_app(client, dispatcher, serve) -> None:
    flask_app = Flask(__name__)
    seen: list[tuple[ReceivedCallback | None, bytes]] = []

    @flask_app.post("/hooks/<tenant>")
    def hook(tenant: str) -> tuple[str, int]:
        assert request.environ[ENVIRON_KEY] is callback_from_environ(request.environ)
        seen.append((callback_from_environ(request.environ), request.get_data()))
        return "", 204

    flask_app.wsgi_app = CallbackMiddleware(flask_app.wsgi_app, NEW, paths=["/hooks"])
    receiver = serve(flask_app)
    created = enqueue(client, f"{receiver.url}/hooks/acme", payload=[1, 2])
    dispatcher.tick()

    assert task(client, created["id"])["status"] == "resolved"
    [(callback, body)] = seen
    assert callback is not None and callback.payload == [1, 2]
    assert json.loads(body)["taskId"] == created["id"]


def test_the_decorator_now_hands_the_parsed_callback(client, dispatcher, serve) -> None:
    flask_app = Flask(__name__)
    seen: list[ReceivedCallback] = []

    @flask_app.post("/hook")
    @verified_callback(NEW)
    def hook(callback: ReceivedCallback) -> tuple[str, int]:
        seen.append(callback)
        return "", 204

    receiver = serve(flask_app)
    created = enqueue(client, f"{receiver.url}/hook", payload="x")
    dispatcher.tick()

    [callback] = seen
    assert (callback.task_id, callback["taskId"], callback.payload) == (
        created["id"],
        created["id"],
        "x",
    )


def test_a_malformed_secret_is_refused_when_the_middleware_is_built() -> None:
    with pytest.raises(InvalidSigningSecret):
        CallbackMiddleware(PlainApp(), "whsec_c2hvcnQ=")
