"""Each attempt has its own deadline, http_callback_timeout_ms from its start, covering name
resolution too; no byte of a request leaves after it (SPEC "The queue semantics").

The stalled name server is a replacement for socket.getaddrinfo that blocks until the
test lets it go: the product resolves names through scheduler_core.resolver, which calls
whatever socket.getaddrinfo is when the lookup runs.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from scheduler_core.resolver import ResolutionTimeout, Resolver
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, enqueue_many, task
from tests.support.waiting import wait_until

TIMEOUT_MS = 1000


class StalledResolver:
    """getaddrinfo that stalls for `name` until `release()`, then answers 127.0.0.1."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lookups = 0
        self._release = threading.Event()
        self._real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        self.lookups += 1
        self._release.wait(30)
        return self._real("127.0.0.1", port, *args, **kwargs)

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def stalled_dns(monkeypatch):
    resolver = StalledResolver("stalled.scheduler.test")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    yield resolver
    resolver.release()


@pytest.mark.slow
def test_a_stalled_name_lookup_is_inside_the_deadline_and_sends_nothing_late(
    client, dispatcher, receiver, store, stalled_dns
):
    set_config(
        store,
        http_callback_timeout_ms=TIMEOUT_MS,
        retry_backoff_ms=300,
        retry_backoff_max_ms=300,
        base_interval_ms=50,
    )
    url = receiver.url("/dns").replace("127.0.0.1", stalled_dns.name)
    created = enqueue(client, url, maxRetries=2)
    dispatcher.start()
    try:
        wait_until(lambda: task(client, created["id"])["status"] == "stale", timeout=20)
        # The lookup answers only now, after every attempt was recorded as failed...
        stalled_dns.release()
        time.sleep(1.0)  # watching for a late request: none may come
    finally:
        dispatcher.stop(wait=True)
    # ...and it connects nothing: no request reached the receiver after its attempt ended.
    assert receiver.calls("/dns") == []
    after = task(client, created["id"])
    assert after["attempts"] == 3
    assert after["lastError"] == (
        f"timeout: name resolution did not finish within the {TIMEOUT_MS} ms callback timeout"
    )
    for record in attempts(client, created["id"]):
        assert record["error"] == after["lastError"]
        assert TIMEOUT_MS * 0.9 <= record["durationMs"] <= TIMEOUT_MS + 400, record
    assert stalled_dns.lookups == 1  # the attempts waited on one lookup, not three


def test_a_lookup_that_answers_within_the_deadline_is_used(
    client, dispatcher, receiver, store, stalled_dns
):
    set_config(store, http_callback_timeout_ms=5000)
    url = receiver.url("/dns").replace("127.0.0.1", stalled_dns.name)
    created = enqueue(client, url)
    threading.Timer(0.3, stalled_dns.release).start()
    dispatcher.tick()
    assert task(client, created["id"])["status"] == "resolved"
    [call] = receiver.calls("/dns")
    assert call.header("Host") == f"{stalled_dns.name}:{receiver.port}"


def test_one_stalled_name_does_not_hold_up_another():
    release = threading.Event()

    def lookup(host, port, **kwargs):
        if host == "stalled.test":
            release.wait(10)
        return socket.getaddrinfo("127.0.0.1", port, **kwargs)

    resolver = Resolver(lookup=lookup)
    try:
        with pytest.raises(ResolutionTimeout):
            resolver.resolve("stalled.test", 80, time.monotonic() + 0.2)
        started = time.monotonic()
        [address] = resolver.resolve("quick.test", 80, time.monotonic() + 5)
        assert address.ip == "127.0.0.1"
        assert time.monotonic() - started < 1.0
    finally:
        release.set()


@pytest.mark.slow
def test_slow_answers_within_their_own_deadline_all_resolve_on_a_busy_dispatcher(
    client, dispatcher, receiver, store, plugins
):
    """The fault this engine replaced: one deadline for a whole tick counted answers that
    came within their own timeout as failed. Here each answer takes 2 s of a 3 s budget,
    and there are more tasks than delivery threads, so most attempts start late in a
    batch; every one still resolves at its first attempt."""
    set_config(store, http_callback_timeout_ms=3000, select_size=100, base_interval_ms=100)
    receiver.behave("/slow", delay=2.0)
    created = enqueue_many(client, [{"webhookUrl": receiver.url("/slow")} for _ in range(90)])
    dispatcher.start()
    try:
        wait_until(
            lambda: all(task(client, t["id"])["status"] == "resolved" for t in created),
            timeout=60,
            interval=0.5,
        )
    finally:
        dispatcher.stop(wait=True)
    assert all(task(client, t["id"])["attempts"] == 1 for t in created)
    assert len(receiver.calls("/slow")) == 90


class ZoneStall:
    """getaddrinfo that stalls every name under `zone` until released, and counts calls."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.called: list[str] = []
        self.release = threading.Event()

    def __call__(self, host, port, **kwargs):
        self.called.append(host)
        if host.endswith(self.zone):
            self.release.wait(30)
        return socket.getaddrinfo("127.0.0.1", port, **kwargs)


def test_a_stalled_zone_with_many_names_cannot_hold_up_other_names():
    """One hostile domain's name server never answers, for 40 names at once: lookups of
    other names still answer at once (each zone holds a few lookup threads at most)."""
    stall = ZoneStall(".stall.test")
    resolver = Resolver(lookup=stall)
    try:
        waiters = [
            threading.Thread(
                target=lambda n=n: pytest.raises(
                    ResolutionTimeout,
                    resolver.resolve,
                    f"evil{n}.stall.test",
                    80,
                    time.monotonic() + 1.0,
                )
            )
            for n in range(40)
        ]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.2)
        started = time.monotonic()
        for name in ("localhost.test", "api.example.test", "hooks.other.test"):
            [address] = resolver.resolve(name, 80, time.monotonic() + 2.0)
            assert address.ip == "127.0.0.1"
        assert time.monotonic() - started < 1.0
        for waiter in waiters:
            waiter.join(5)
    finally:
        stall.release.set()
    assert sum(h.endswith(".stall.test") for h in stall.called) <= 4


def test_a_queued_lookup_nobody_waits_for_any_more_is_never_made():
    stall = ZoneStall(".stall.test")
    resolver = Resolver(lookup=stall, per_zone=1)
    try:
        for name in ("a.stall.test", "b.stall.test"):
            with pytest.raises(ResolutionTimeout):
                resolver.resolve(name, 80, time.monotonic() + 0.2)
    finally:
        stall.release.set()
    wait_until(lambda: not resolver._in_flight, timeout=5)  # noqa: SLF001
    assert stall.called == ["a.stall.test"]
