"""Stopping: in-flight deliveries finish and are recorded; nothing new is claimed."""

from __future__ import annotations

import time

import pytest

from tests.conftest import set_config
from tests.dispatch.helpers import enqueue, task
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # each waits out a one-second delivery

QUIET_S = 0.6  # how long to watch a stopped dispatcher for unwanted calls


def _assert_claims_nothing(client, receiver, path: str) -> None:
    later = [enqueue(client, receiver.url(path)) for _ in range(2)]
    time.sleep(QUIET_S)  # ticks are 50 ms apart: a live dispatcher would call by now
    assert receiver.calls(path) == []
    for created in later:
        after = task(client, created["id"])
        assert (after["status"], after["attempts"]) == ("pending", 0)


def test_stop_waits_for_the_delivery_in_flight_and_records_it(client, dispatcher, receiver, store):
    set_config(store, base_interval_ms=50)
    receiver.behave("/slow", delay=1.0)
    created = enqueue(client, receiver.url("/slow"))
    dispatcher.start()
    [call] = receiver.wait_for(1, "/slow")
    assert task(client, created["id"])["status"] == "running"

    dispatcher.stop(wait=True)

    assert time.monotonic() - call.at >= 0.9  # it waited for the slow answer
    after = task(client, created["id"])
    assert after["status"] == "resolved"
    assert after["lastStatusCode"] == 200
    _assert_claims_nothing(client, receiver, "/after-stop")


def test_request_stop_lets_the_tick_finish_then_claims_nothing(client, dispatcher, receiver, store):
    set_config(store, base_interval_ms=50)
    receiver.behave("/slow", delay=1.0)
    created = enqueue(client, receiver.url("/slow"))
    dispatcher.start()
    try:
        receiver.wait_for(1, "/slow")
        began = time.monotonic()
        dispatcher.request_stop()
        assert time.monotonic() - began < 0.2  # safe for a signal handler: never blocks
        assert dispatcher.stopping
        wait_until(lambda: task(client, created["id"])["status"] == "resolved", timeout=10)
        _assert_claims_nothing(client, receiver, "/after-stop")
    finally:
        dispatcher.stop(wait=True)


def test_stop_between_ticks_is_prompt(client, dispatcher, receiver, store):
    set_config(store, base_interval_ms=60_000)
    enqueue(client, receiver.url("/one"))
    dispatcher.start()
    receiver.wait_for(1, "/one")
    wait_until(lambda: client.get("/api/v1/tasks?status=resolved").json["tasks"], timeout=10)
    began = time.monotonic()
    dispatcher.stop(wait=True)
    assert time.monotonic() - began < 2.0
