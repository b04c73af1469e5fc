"""Retries only where a second try cannot act twice: the client talks to the real API
through a real proxy that drops connections or answers 502/503/504 on the first
requests, and counts what it saw."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from scheduler_core.client import (
    Client,
    NewTask,
    NotFound,
    ServerError,
    TransportError,
    Unavailable,
)
from tests.client.servers import FakeApi, FlakyProxy, json_answer

NOWHERE = "http://127.0.0.1:9/hook"
LATER = "2099-01-01T00:00:00Z"
TASKS = "/api/v1/tasks"

Flaky = Callable[..., tuple[FlakyProxy, Client]]


@pytest.fixture
def flaky(request: pytest.FixtureRequest) -> Iterator[Flaky]:
    """flaky(*faults, upstream=the real API) -> (proxy, a client talking through it). The
    real API (and so a backend) is started only for a test that uses it."""
    made: list[tuple[FlakyProxy, Client]] = []

    def make(
        *faults: str, upstream: str | None = None, retries: int = 3
    ) -> tuple[FlakyProxy, Client]:
        upstream = upstream or request.getfixturevalue("base_url")
        proxy = FlakyProxy(upstream, list(faults))
        made.append((proxy, Client(proxy.url, retries=retries, backoff_s=0.01, timeout=5)))
        return made[-1]

    yield make
    for proxy, client in made:
        client.close()
        proxy.close()


def test_a_get_is_retried_after_a_dropped_connection_and_a_503(api: Client, flaky: Flaky) -> None:
    task = api.enqueue(NOWHERE, execute_at=LATER)
    proxy, client = flaky("drop", "503", "502")

    assert client.get_task(task.id).id == task.id
    assert proxy.count("GET", f"{TASKS}/{task.id}") == 4
    assert proxy.forwarded[("GET", f"{TASKS}/{task.id}")] == 1


def test_retries_give_up_after_the_last_try(flaky: Flaky) -> None:
    nowhere = "http://127.0.0.1:9"  # never reached: every try meets a fault
    proxy, client = flaky("503", "504", "503", "503", retries=3, upstream=nowhere)
    with pytest.raises(Unavailable):
        client.list_tasks()
    assert proxy.count("GET", TASKS) == 4

    proxy, client = flaky("drop", "drop", retries=1, upstream=nowhere)
    with pytest.raises(TransportError, match="closed the connection"):
        client.list_tasks()
    assert proxy.count("GET", TASKS) == 2


def test_post_retry_is_sent_exactly_once_even_when_it_gets_a_503(api: Client, flaky: Flaky) -> None:
    task = api.cancel(api.enqueue(NOWHERE, execute_at=LATER).id)
    proxy, client = flaky("503")

    with pytest.raises(Unavailable):
        client.retry(task.id)
    assert proxy.count("POST", f"{TASKS}/{task.id}/retry") == 1
    assert api.get_task(task.id).status == "cancelled"  # nothing reached the server


def test_post_retry_whose_answer_is_lost_is_not_sent_again(api: Client, flaky: Flaky) -> None:
    task = api.cancel(api.enqueue(NOWHERE, execute_at=LATER).id)
    proxy, client = flaky("drop-after")

    with pytest.raises(TransportError):
        client.retry(task.id)
    assert proxy.count("POST", f"{TASKS}/{task.id}/retry") == 1
    assert api.get_task(task.id).status == "pending"  # it acted, once


def test_an_enqueue_without_a_key_is_sent_once(api: Client, flaky: Flaky) -> None:
    proxy, client = flaky("drop-after")
    with pytest.raises(TransportError):
        client.enqueue(NOWHERE, execute_at=LATER)
    assert proxy.count("POST", TASKS) == 1
    assert len(api.list_tasks().tasks) == 1  # the server made it; no duplicate

    proxy, client = flaky("503")
    with pytest.raises(Unavailable):
        client.enqueue_many([NewTask(NOWHERE, idempotency_key="k1"), NewTask(NOWHERE)])
    assert proxy.count("POST", TASKS) == 1


def test_an_enqueue_with_a_key_is_retried_and_creates_one_task(api: Client, flaky: Flaky) -> None:
    proxy, client = flaky("drop-after", "503")

    task = client.enqueue(NOWHERE, execute_at=LATER, idempotency_key="report-7")

    assert proxy.count("POST", TASKS) == 3
    assert proxy.forwarded[("POST", TASKS)] == 2
    [stored] = api.list_tasks().tasks
    assert stored.id == task.id

    proxy, client = flaky("drop-after")
    many = client.enqueue_many(
        [NewTask(NOWHERE, idempotency_key="a"), NewTask(NOWHERE, idempotency_key="b")]
    )
    assert proxy.count("POST", TASKS) == 2
    assert len(api.list_tasks().tasks) == 3
    assert {t.idempotency_key for t in many} == {"a", "b"}


def test_cancel_is_retried_since_cancelling_twice_cancels_once(api: Client, flaky: Flaky) -> None:
    task = api.enqueue(NOWHERE, execute_at=LATER)
    proxy, client = flaky("drop-after", "drop-after")

    assert client.cancel(task.id).status == "cancelled"
    assert proxy.forwarded[("DELETE", f"{TASKS}/{task.id}")] == 3


def test_4xx_and_500_are_never_retried(base_url: str, flaky: Flaky) -> None:
    proxy, client = flaky()
    with pytest.raises(NotFound):
        client.get_task("missing")
    assert proxy.count("GET", f"{TASKS}/missing") == 1

    server = FakeApi(
        {
            ("GET", TASKS): lambda _: json_answer(
                500, {"error": {"code": "internal_error", "message": "Boom."}}
            )
        }
    )
    try:
        with (
            Client(server.url, retries=3, backoff_s=0.01) as client500,
            pytest.raises(ServerError) as raised,
        ):
            client500.list_tasks()
        assert raised.value.code == "internal_error"
        assert server.count("GET", TASKS) == 1
    finally:
        server.close()


def test_retry_after_is_honoured_and_a_long_one_is_not_waited_for(
    base_url: str, flaky: Flaky
) -> None:
    proxy, client = flaky("503-retry-after:1")
    started = time.monotonic()
    client.list_tasks()
    assert time.monotonic() - started >= 0.95  # waited the server's second, not 10 ms
    assert proxy.count("GET", TASKS) == 2

    proxy, client = flaky("503-retry-after:120")
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        client.list_tasks()
    assert time.monotonic() - started < 10
    assert raised.value.retry_after == 120
    assert proxy.count("GET", TASKS) == 1


# The PATCH and bulk routes come from another branch: a fake upstream answers per the brief.


@pytest.fixture
def fake_upstream() -> Iterator[FakeApi]:
    task = {
        "id": "t1",
        "webhookUrl": NOWHERE,
        "executeAt": "2030-01-01T00:00:00Z",
        "status": "pending",
        "attempts": 0,
        "nextAttemptAt": "2030-01-01T00:00:00Z",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
    server = FakeApi(
        {
            ("PATCH", f"{TASKS}/t1"): lambda _: json_answer(200, task),
            ("POST", f"{TASKS}:retry"): lambda _: json_answer(200, {"count": 3}),
            ("POST", f"{TASKS}:cancel"): lambda _: json_answer(200, {"count": 2}),
        }
    )
    yield server
    server.close()


def test_reschedule_is_retried_since_the_time_is_absolute(
    flaky: Flaky, fake_upstream: FakeApi
) -> None:
    proxy, client = flaky("drop-after", "503", upstream=fake_upstream.url)
    assert client.reschedule("t1", "2030-01-01T00:00:00Z").id == "t1"
    assert proxy.count("PATCH", f"{TASKS}/t1") == 3


@pytest.mark.parametrize("verb", ["retry", "cancel"])
def test_bulk_verbs_are_never_retried(flaky: Flaky, fake_upstream: FakeApi, verb: str) -> None:
    proxy, client = flaky("503", upstream=fake_upstream.url)
    with pytest.raises(Unavailable):
        getattr(client, f"bulk_{verb}")(status="stale")
    assert proxy.count("POST", f"{TASKS}:{verb}") == 1

    proxy, client = flaky("drop-after", upstream=fake_upstream.url)
    with pytest.raises(TransportError):
        getattr(client, f"bulk_{verb}")(status="stale")
    assert fake_upstream.count("POST", f"{TASKS}:{verb}") == 1
