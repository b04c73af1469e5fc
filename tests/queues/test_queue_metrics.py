"""The metrics of a named queue carry its name: enqueued tasks (the API counts them by
queue) and attempts (the dispatcher's ClaimedTask names the queue)."""

from __future__ import annotations

from datetime import timedelta

from tests.api.helpers import NOWHERE
from tests.queues.conftest import put_queue
from tests.support.metrics import parse
from tests.support.waiting import wait_until


def scrape(client):
    return parse(client.get("/metrics").get_data(as_text=True))


def test_enqueued_tasks_are_counted_by_their_queue(client) -> None:
    put_queue(client, "mail")
    for queue in ("mail", "mail", "default"):
        assert client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "queue": queue})
    metrics = scrape(client)
    assert metrics.value("scheduler_tasks_enqueued_total", queue="mail") == 2
    assert metrics.value("scheduler_tasks_enqueued_total", queue="default") == 1


def test_attempts_are_counted_by_their_queue(client, dispatcher, receiver) -> None:
    receiver.behave("/ok", statuses=[200])
    put_queue(client, "mail")
    response = client.post(
        "/api/v1/tasks", json={"webhookUrl": receiver.url("/ok"), "queue": "mail"}
    )
    assert response.status_code == 201
    dispatcher.tick()
    metrics = scrape(client)
    assert metrics.value("scheduler_attempts_total", queue="mail", outcome="resolved") == 1
    assert metrics.value("scheduler_attempts_total", queue="default", outcome="resolved") == 0


def test_lost_attempts_are_counted_by_their_queue(client, store, dispatcher, db) -> None:
    put_queue(client, "mail")
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "queue": "mail"})
    assert response.status_code == 201
    [claimed] = store.claim_queue("mail", 10, 1).tasks  # a dispatcher that dies holding it
    leased_until = db.now() + timedelta(milliseconds=50)
    wait_until(lambda: db.now() > leased_until, timeout=10)

    dispatcher.tick()  # the reaper records the attempt lost

    metrics = scrape(client)
    assert metrics.value("scheduler_attempts_total", queue="mail", outcome="lost") == 1
    assert store.attempts(claimed.id)[0].outcome.value == "lost"
