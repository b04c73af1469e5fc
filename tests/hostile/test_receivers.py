"""Hostile receivers the plugin tests do not cover: TLS failures, resets, broken status
lines, endless redirects, endless headers, endless chunked bodies.

Each one is a failed attempt (or, for a 200 whose endless body is cut at the read limit,
a resolved one) with a clear lastError, decided within the callback timeout: the tick
never runs longer than http_callback_timeout_ms plus a little.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task, timed_tick
from tests.hostile import servers as hs
from tests.plugins.rawservers import RawServer

pytestmark = pytest.mark.slow  # each case waits out a callback timeout

TIMEOUT_MS = 1000
# The whole tick (claim, deliver, record) may overrun the callback timeout by this much.
OVERRUN_S = 1.5
# A 200 with an endless body must not hold the tick past the timeout plus one second.
ENDLESS_BODY_OVERRUN_S = 1.0
# The plugin itself notices its deadline; the dispatcher's straggler grace is not used.
PLUGIN_SLACK_MS = 500


@dataclass
class Case:
    make: Callable[..., tuple[str, RawServer | None]]
    status: str  # the task's status after one tick
    prefix: str  # lastError starts with this ("": resolved, no error)
    mentions: tuple[str, ...] = ()  # lastError names the cause with one of these
    status_code: int | None = None
    overrun_s: float = OVERRUN_S
    fast: bool = False  # decided well before the timeout


def _tls_untrusted(hostile, receiver, certificate):
    server = hostile(hs.TlsServer(*certificate))
    return server.url(), server


def _https_to_plain_http(hostile, receiver, certificate):
    return receiver.url("/plain").replace("http://", "https://"), None


def _tls_handshake_never_answered(hostile, receiver, certificate):
    server = hostile(hs.HangUntilHangup())
    return server.url().replace("http://", "https://"), server


def _raw(cls: type[RawServer], **kwargs: Any) -> Callable[..., tuple[str, RawServer]]:
    def make(hostile, receiver, certificate):
        server = hostile(cls(**kwargs))
        return server.url("/hook"), server

    return make


CASES = {
    "tls untrusted certificate": Case(
        _tls_untrusted, "pending", "tls error", ("certificate",), fast=True
    ),
    "https to a plain http port": Case(
        _https_to_plain_http, "pending", "tls error", ("ssl", "version", "record"), fast=True
    ),
    "tls handshake never answered": Case(
        _tls_handshake_never_answered, "pending", "timeout", ("within",)
    ),
    "reset on accept": Case(
        _raw(hs.ResetOnAccept),
        "pending",
        "connection error",
        ("reset", "broken pipe", "aborted"),
        fast=True,
    ),
    "reset after the request": Case(
        _raw(hs.ResetAfterRequest), "pending", "connection error", ("reset",), fast=True
    ),
    "closed without an answer": Case(
        _raw(hs.CloseWithoutAnswer),
        "pending",
        "connection error",
        ("without response", "remotedisconnected"),
        fast=True,
    ),
    "half a status line": Case(
        _raw(hs.HalfStatusLine), "pending", "connection error", ("badstatusline",), fast=True
    ),
    "endless redirects": Case(
        _raw(hs.EndlessRedirect),
        "pending",
        "HTTP 302",
        ("redirects are not followed",),
        status_code=302,
        fast=True,
    ),
    "header flood": Case(
        _raw(hs.HeaderFlood), "pending", "connection error", ("100 headers",), fast=True
    ),
    "giant header block": Case(
        _raw(hs.GiantHeaders), "pending", "connection error", ("headers over",), fast=True
    ),
    "one endless header line": Case(
        _raw(hs.EndlessHeaderLine),
        "pending",
        "connection error",
        ("line", "headers over"),
        fast=True,
    ),
    "endless slow header lines": Case(
        _raw(hs.SlowEndlessHeaders, every=0.02), "pending", "timeout", ("within",)
    ),
    "endless chunked body, flat out": Case(
        _raw(hs.EndlessChunked, every=0.0),
        "resolved",
        "",
        status_code=200,
        overrun_s=ENDLESS_BODY_OVERRUN_S,
        fast=True,
    ),
    "endless chunked body, trickled": Case(
        _raw(hs.EndlessChunked, every=0.05, chunk_size=64),
        "pending",
        "timeout",
        ("within",),
        overrun_s=ENDLESS_BODY_OVERRUN_S,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_receiver_is_one_clear_outcome_within_the_deadline(
    name, client, store, dispatcher, receiver, hostile, certificate, measure
):
    case = CASES[name]
    set_config(store, http_callback_timeout_ms=TIMEOUT_MS)
    url, server = case.make(hostile, receiver, certificate)
    created = enqueue(client, url)

    wall = timed_tick(dispatcher)
    measure("tick_wall_s", round(wall, 3))

    after = task(client, created["id"])
    [record] = attempts(client, created["id"])
    measure("last_error", after["lastError"])
    assert after["status"] == case.status, after
    assert after["attempts"] == 1
    assert after["lastStatusCode"] == case.status_code
    assert record["statusCode"] == case.status_code
    if case.status == "resolved":
        assert after["lastError"] is None and record["error"] is None
    else:
        error = after["lastError"]
        assert error.startswith(case.prefix), error
        assert record["error"] == error
        assert "no outcome" not in error  # the plugin decided, not the dispatcher's backstop
        assert any(word in error.lower() for word in case.mentions), error
        assert len(error) <= 400
    assert record["durationMs"] <= TIMEOUT_MS + PLUGIN_SLACK_MS
    assert wall <= TIMEOUT_MS / 1000 + case.overrun_s, f"tick took {wall:.2f}s"
    if case.fast:
        assert record["durationMs"] < TIMEOUT_MS * 0.8, record
    if name == "endless redirects":
        assert server is not None and server.requests == 1  # one call, never followed
    if name == "tls untrusted certificate":
        assert isinstance(server, hs.TlsServer) and server.requests == 0  # nothing was sent


def test_a_tick_of_every_hostile_receiver_at_once_is_bounded(
    client, store, dispatcher, receiver, hostile, certificate, measure
):
    """All of them in one tick, next to a good receiver: the good one resolves, the tick
    ends within the timeout, each hostile one has its own clear error."""
    set_config(store, http_callback_timeout_ms=TIMEOUT_MS)
    created = {}
    for name, case in CASES.items():
        url, _ = case.make(hostile, receiver, certificate)
        created[name] = enqueue(client, url)["id"]
    good = enqueue(client, receiver.url("/good"))["id"]

    wall = timed_tick(dispatcher)
    measure("tick_wall_s", round(wall, 3))

    assert task(client, good)["status"] == "resolved"
    for name, task_id in created.items():
        after = task(client, task_id)
        assert after["status"] == CASES[name].status, (name, after)
        assert (after["lastError"] or "").startswith(CASES[name].prefix), (name, after)
    assert wall <= TIMEOUT_MS / 1000 + OVERRUN_S, f"tick took {wall:.2f}s"


@pytest.mark.parametrize("server_kind", ["never answers", "trickles"])
def test_the_deadline_bounds_a_tls_handshake_that_starts_late(
    client, store, dispatcher, hostile, monkeypatch, server_kind, measure
):
    """Setting up TLS (loading the CA bundle) takes time on a busy host; the handshake
    after it must still end at the callback deadline, not a full timeout later."""
    import urllib3.connection

    setup_s = 0.7
    original = urllib3.connection.create_urllib3_context

    def slow_tls_setup(*args, **kwargs):
        time.sleep(setup_s)  # stands in for a busy CPU; not a wait for the test's sake
        return original(*args, **kwargs)

    monkeypatch.setattr(urllib3.connection, "create_urllib3_context", slow_tls_setup)
    set_config(store, http_callback_timeout_ms=TIMEOUT_MS)
    server = hostile(
        hs.HangUntilHangup() if server_kind == "never answers" else hs.TlsHandshakeTrickler(0.05)
    )
    created = enqueue(client, server.url().replace("http://", "https://"))

    wall = timed_tick(dispatcher)
    measure("tick_wall_s", round(wall, 3))

    [record] = attempts(client, created["id"])
    assert record["error"].startswith("timeout"), record
    assert "no outcome" not in record["error"]
    assert record["durationMs"] <= TIMEOUT_MS + 200, record
    assert wall <= TIMEOUT_MS / 1000 + OVERRUN_S
