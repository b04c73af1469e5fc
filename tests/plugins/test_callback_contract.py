"""The callback contract in the core (SPEC "The callback", "Delivery rules"): one place
builds the request every transport sends and judges every answer, whatever plugin moved
the bytes. Only a final answer counts; lastError is printable, bounded and never holds the
task's webhookAuth; an observer wraps every attempt."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import urllib.parse
from urllib.parse import urlsplit

import pytest

import scheduler_core
from scheduler_core import __version__
from scheduler_core.judgement import MAX_ERROR_CHARS, clean_error, parse_retry_after, printable
from scheduler_core.models import ClaimedTask, DeliveryReport
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, ms_between, task
from tests.dispatch.observers import AttemptRecorder
from tests.plugins.rawservers import EndlessInterim, RawServer, Scripted


@pytest.fixture
def raw():
    servers: list[RawServer] = []

    def keep(server):
        servers.append(server)
        return server

    yield keep
    for server in servers:
        server.close()


# -- only a final answer counts -------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 3,
    ],
    ids=["103", "102", "100", "several"],
)
def test_informational_answers_are_skipped_and_the_final_one_counts(
    client, dispatcher, raw, interim
):
    server = raw(Scripted(interim + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    created = enqueue(client, server.url())
    dispatcher.tick()
    after = task(client, created["id"])
    assert (after["status"], after["lastStatusCode"], after["lastError"]) == ("resolved", 200, None)


def test_a_failure_after_an_interim_answer_is_the_final_status(client, dispatcher, raw):
    server = raw(
        Scripted(
            b"HTTP/1.1 103 Early Hints\r\n\r\n"
            b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\nbusy"
        )
    )
    created = enqueue(client, server.url())
    dispatcher.tick()
    after = task(client, created["id"])
    assert (after["status"], after["lastStatusCode"]) == ("pending", 503)
    assert after["lastError"] == "HTTP 503: busy"
    [record] = attempts(client, created["id"])
    assert 2995 <= ms_between(record["finishedAt"], after["nextAttemptAt"]) <= 3050


def test_a_protocol_switch_nobody_asked_for_is_not_a_success(client, dispatcher, raw):
    server = raw(Scripted(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"))
    created = enqueue(client, server.url())
    dispatcher.tick()
    after = task(client, created["id"])
    assert (after["status"], after["lastStatusCode"]) == ("pending", 101)
    assert after["lastError"].startswith("HTTP 101 (no final response")


def test_endless_interim_answers_are_cut_off_by_the_header_budget(client, dispatcher, raw, store):
    set_config(store, http_callback_timeout_ms=3000)
    server = raw(EndlessInterim())
    created = enqueue(client, server.url())
    dispatcher.tick()
    [record] = attempts(client, created["id"])
    assert record["statusCode"] is None
    assert "headers over" in record["error"]
    assert record["durationMs"] < 2500  # the budget, not the deadline, ended it


# -- the core builds the request and judges the answer, for any transport -----------------


class ReportingScheme:
    """A transport plugin of the current kind: sends the core's callback (kept here) and
    reports raw facts; `report` says what each attempt comes to."""

    def __init__(self, report) -> None:
        self.report = report
        self.sent: list = []

    @scheduler_core.hookimpl
    def scheduler_delivery_schemes(self):
        return ["queue"]

    @scheduler_core.hookimpl
    def scheduler_deliver(self, callback, deadline):
        if urlsplit(callback.url).scheme != "queue":
            return None
        self.sent.append(callback)
        return self.report(callback)


def test_a_transport_plugin_gets_the_core_envelope(client, dispatcher, plugins):
    scheme = ReportingScheme(lambda callback: DeliveryReport.accepted())
    plugins.register(scheme)
    created = enqueue(
        client, "queue://broker/jobs", webhookAuth="Bearer t0ken", payload={"b": 1, "a": 2}
    )
    dispatcher.tick()
    [callback] = scheme.sent
    assert callback.url == "queue://broker/jobs"
    headers = dict(callback.headers)
    # The attempt's completion URLs go with every transport (Scheduler-Async).
    complete = headers.pop("X-Scheduler-Complete-Url")
    fail = headers.pop("X-Scheduler-Fail-Url")
    assert complete.startswith(f"{plugins.settings.public_url}/callbacks/v1/complete/")
    assert fail.startswith(f"{plugins.settings.public_url}/callbacks/v1/fail/")
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": f"scheduler-core/{__version__}",
        "X-Scheduler-Task-Id": created["id"],
        "X-Scheduler-Attempt": "1",
        "Authorization": "Bearer t0ken",
    }
    assert (
        callback.body
        == (
            f'{{"taskId": "{created["id"]}", "executeAt": "{created["executeAt"]}", '
            '"attempt": 1, "payload": {"b": 1, "a": 2}}'
        ).encode()
    )
    after = task(client, created["id"])
    assert (after["status"], after["lastStatusCode"]) == ("resolved", None)


def test_a_transport_answer_is_judged_by_the_same_rules_as_http(
    client, dispatcher, plugins, store, db
):
    set_config(store, retry_backoff_ms=100, retry_backoff_max_ms=60_000)
    answers = iter(
        [
            DeliveryReport.answered(429, {"retry-AFTER": "7"}, b"slow down\x00\x07 please"),
            DeliveryReport.failed("no complete response", timed_out=True),
            DeliveryReport.answered(204),
        ]
    )
    plugins.register(ReportingScheme(lambda callback: next(answers)))
    created = enqueue(client, "queue://broker/jobs")

    dispatcher.tick()
    first = task(client, created["id"])
    [record] = attempts(client, created["id"])
    assert (first["status"], first["lastStatusCode"]) == ("pending", 429)
    assert first["lastError"] == "HTTP 429: slow down\\x00\\x07 please"
    assert 6995 <= ms_between(record["finishedAt"], first["nextAttemptAt"]) <= 7050

    set_config(store, http_callback_timeout_ms=1234)
    dispatcher.tick()  # not due yet: Retry-After holds
    assert task(client, created["id"])["attempts"] == 1
    # A transport's 429 throttles its host as an HTTP one does (per-host backpressure).
    assert [h.host for h in store.list_hosts()] == ["broker"]
    db.make_due(created["id"])
    db.execute("DELETE FROM scheduler_hosts")  # and lift the host's block
    dispatcher.tick()
    second = task(client, created["id"])
    assert (
        second["lastError"] == "timeout: no complete response within the 1234 ms callback timeout"
    )
    db.make_due(created["id"])
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"
    assert [a["outcome"] for a in attempts(client, created["id"])] == [
        "failed",
        "failed",
        "resolved",
    ]


def test_a_plugin_returning_nonsense_fails_the_attempt_saying_so(client, dispatcher, plugins):
    plugins.register(ReportingScheme(lambda callback: {"status": 200}))
    created = enqueue(client, "queue://broker/jobs")
    dispatcher.tick()
    after = task(client, created["id"])
    assert after["status"] == "pending"
    assert after["lastError"] == "delivery plugin error: returned dict, not a DeliveryReport"


# -- lastError: printable, bounded, no secrets -----------------------------------------------

SECRET = "Bearer s3cr3t-T0KEN-value"


@pytest.mark.parametrize(
    "echo",
    [
        SECRET.encode(),
        SECRET.upper().encode(),
        b"s3cr3t-T0KEN-value",
        b"Bearer\r\n  s3cr3t-T0KEN-value",
        b"x" * 185 + SECRET.encode(),  # across the quoted part's end
        b" " * 1975 + SECRET.encode(),  # across the end of what is read for the quote
        b'{"got": "' + SECRET.encode() + b'"}',
    ],
    ids=["verbatim", "upper case", "token only", "folded", "at the cut", "at the read", "json"],
)
def test_a_receiver_echoing_webhook_auth_never_puts_it_in_last_error(
    client, dispatcher, receiver, caplog, echo
):
    receiver.behave("/echo", statuses=[401], body=b"denied: " + echo)
    created = enqueue(client, receiver.url("/echo"), webhookAuth=SECRET)
    with caplog.at_level(logging.DEBUG):
        dispatcher.tick()
    after = task(client, created["id"])
    [record] = attempts(client, created["id"])
    for text in (after["lastError"], record["error"], caplog.text):
        assert "s3cr3t-t0ken-value" not in text.lower()
        assert "s3cr3" not in text.lower()  # not even the start of it
    assert after["lastError"].startswith("HTTP 401: denied: ")
    assert "[redacted]" in after["lastError"] or "[reda" in after["lastError"]


def _readable(text: str) -> str:
    """What a reader could recover from `text`: escapes undone, then only letters and
    digits, lower case (the test's own decoding, not the product's)."""
    text = urllib.parse.unquote(html.unescape(text))
    text = re.sub(r"\\[ux]([0-9a-fA-F]{2,4})", lambda m: chr(int(m.group(1), 16)), text)
    return "".join(ch for ch in text if ch.isalnum()).lower()


SHAPED_SECRETS = {
    "latin-1": ("Bearer", "sécret-tökén-9876-ABCD"),
    "slashes": ("Bearer", "ab/cd+ef/gh12=="),
    "markup": ("Token", "a&b<c>d\"e'f1234"),
    "long": ("Bearer", "s3cr3t-T0ken-abcdef0123456789" * 5),
}


def _echoes(auth: str) -> dict[str, bytes]:
    token = auth.partition(" ")[2]
    middle = len(token) // 2
    return {
        "raw iso-8859-1": auth.encode("latin-1"),
        "raw utf-8": auth.encode(),
        "upper case": auth.upper().encode("latin-1", "replace"),
        "json": json.dumps({"got": auth}).encode(),
        "json, escaped slashes": json.dumps({"got": auth}).replace("/", "\\/").encode(),
        "html": html.escape(auth).encode(),
        "url-encoded": urllib.parse.quote(auth).encode(),
        "split across lines": (token[:middle] + "\r\n  " + token[middle:]).encode("latin-1"),
        "nul between characters": "\x00".join(token).encode("latin-1"),
        "at the quote limit": b"x" * 170 + auth.encode("latin-1"),
        "at the read limit": b" " * 1975 + auth.encode("latin-1"),
    }


@pytest.mark.parametrize("shape", list(SHAPED_SECRETS))
def test_a_secret_echoed_in_any_common_encoding_is_redacted(
    client, dispatcher, receiver, caplog, shape
):
    scheme, token = SHAPED_SECRETS[shape]
    auth = f"{scheme} {token}"
    echoes = _echoes(auth)
    created = {}
    for name, body in echoes.items():
        path = "/" + re.sub(r"\W", "-", name)
        receiver.behave(path, statuses=[500], body=b"you sent: " + body)
        created[name] = enqueue(client, receiver.url(path), webhookAuth=auth)["id"]
    with caplog.at_level(logging.DEBUG):
        dispatcher.tick()
    hidden = _readable(token)[:12]  # not even a dozen characters of it in a row
    for name, task_id in created.items():
        after = task(client, task_id)
        [record] = attempts(client, task_id)
        assert after["lastError"].startswith("HTTP 500: you sent: "), (name, after)
        for text in (after["lastError"], record["error"]):
            assert hidden not in _readable(text), (name, text)
    assert hidden not in _readable(caplog.text)


def test_url_credentials_are_kept_out_of_last_error(client, dispatcher, receiver):
    receiver.behave("/creds", statuses=[403], body=b"who is admin:hunter2-pw?")
    url = receiver.url("/creds").replace("http://", "http://admin:hunter2-pw@")
    created = enqueue(client, url)
    dispatcher.tick()
    error = task(client, created["id"])["lastError"]
    assert "hunter2-pw" not in error
    assert error == "HTTP 403: who is [redacted]?"


def test_last_error_is_printable_and_at_most_500_characters(client, dispatcher, receiver):
    body = ("\x00\x1b[31m\u202e\ud800" + "é" * 40 + "\t\n" * 10 + "z" * 5000).encode(
        "utf-8", "surrogatepass"
    )
    receiver.behave("/ugly", statuses=[500], body=body)
    created = enqueue(client, receiver.url("/ugly"))
    dispatcher.tick()
    error = task(client, created["id"])["lastError"]
    assert error.isprintable()
    assert len(error) <= MAX_ERROR_CHARS
    assert error.startswith("HTTP 500: \\x00\\x1b[31m")


def _claimed(auth: str | None, url: str = "http://x/") -> ClaimedTask:
    from datetime import UTC, datetime

    return ClaimedTask(
        id="t",
        webhook_url=url,
        webhook_auth=auth,
        execute_at=datetime(2030, 1, 1, tzinfo=UTC),
        payload_json="null",
        attempt=1,
        attempts_in_budget=1,
        max_retries=None,
    )


@pytest.mark.parametrize(
    ("auth", "text", "expected"),
    [
        ("ab", "ab AB aB", "[redacted] [redacted] [redacted]"),  # the whole value, however short
        ("Basic dXNlcjpwYXNzd29yZA==", "user:password and password", "[redacted] and [redacted]"),
        ("Token abc", "Token abc / abc", "[redacted] / abc"),  # a 3-letter part alone is kept
        (None, "nothing to hide", "nothing to hide"),
    ],
)
def test_redaction_rules(auth, text, expected):
    assert clean_error(text, _claimed(auth)) == expected


def test_printable_escapes_controls_and_folds_white_space():
    assert printable("a\x00b\r\n\tc\u2028d\x7f") == "a\\x00b c d\\x7f"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("99999999999999999999999999", 604_800_000),
        ("604800", 604_800_000),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 604_800_000),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0),
        ("Fri, 17 May 2030 12:00:00 +9999", None),
    ],
)
def test_retry_after_is_read_within_sane_bounds(value, expected):
    assert parse_retry_after(value) == expected


# -- an observer wraps every attempt -------------------------------------------------------


def test_an_observer_sees_every_attempt_and_its_outcome(
    client, dispatcher, receiver, plugins, store
):
    set_config(store, retry_backoff_ms=0)
    observer = AttemptRecorder()
    plugins.register(observer)
    receiver.behave("/flaky", statuses=[500, 200])
    created = enqueue(client, receiver.url("/flaky"))
    dispatcher.tick()
    dispatcher.tick()
    seen = sorted(observer.seen, key=lambda s: s.attempt)
    assert [(s.task_id, s.attempt) for s in seen] == [(created["id"], 1), (created["id"], 2)]
    first, second = (s.recorded for s in seen)
    assert (first.outcome.status_code, first.decision.retry_in_ms) == (500, 0)
    assert (second.outcome.ok, second.decision) == (True, None)
    assert all(s.ended >= s.started for s in seen)


def test_a_plugins_endless_error_is_cut_cleanly_without_leaving_part_of_a_secret():
    task = _claimed("Bearer s3cr3t-T0KEN-value")
    error = clean_error(" " * 1990 + "Bearer s3cr3t-T0KEN-value" + "x" * 10**6, task)
    assert "s3cr3" not in error.lower() and len(error) <= MAX_ERROR_CHARS
    assert error == "[redacted]"


@pytest.mark.parametrize("shape", list(SHAPED_SECRETS))
def test_a_secret_echoed_as_base64_or_hex_is_redacted(client, dispatcher, receiver, caplog, shape):
    scheme, token = SHAPED_SECRETS[shape]
    auth = f"{scheme} {token}"
    encoded = {
        "base64 of the header": base64.b64encode(auth.encode("latin-1")).decode(),
        "base64 of the token": base64.b64encode(token.encode()).decode(),
        "url-safe base64": base64.urlsafe_b64encode(token.encode()).decode().rstrip("="),
        "hex": token.encode().hex(),
        "HEX": token.encode().hex().upper(),
    }
    created = {}
    for name, text in encoded.items():
        path = "/" + re.sub(r"\W", "-", name)
        receiver.behave(path, statuses=[401], body=f"you sent: {text} .".encode())
        created[name] = enqueue(client, receiver.url(path), webhookAuth=auth)["id"]
    with caplog.at_level(logging.DEBUG):
        dispatcher.tick()
    for name, task_id in created.items():
        after = task(client, task_id)
        [record] = attempts(client, task_id)
        assert after["lastError"].startswith("HTTP 401: you sent: "), (name, after)
        hidden = encoded[name].rstrip("=")[:12].lower()
        for text in (after["lastError"], record["error"], caplog.text):
            assert hidden not in text.lower(), (name, text)
