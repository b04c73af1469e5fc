"""GET /api/v1/stats: counts by status, due backlog and lateness, by the database clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler_core.api import create_app
from scheduler_core.models import NewTask
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from tests.api.helpers import NOWHERE, STATUSES, assert_error

ZERO = dict.fromkeys(STATUSES, 0)


def test_an_empty_scheduler_shows_every_status_at_zero(client) -> None:
    response = client.get("/api/v1/stats")
    assert response.status_code == 200
    assert response.get_json() == {
        "counts": ZERO,
        "dueBacklog": 0,
        "oldestDueAgeSeconds": 0.0,
        "lateness": {"windowSeconds": 300, "p50Ms": None, "p99Ms": None},
        "queues": [
            {"queue": "default", "counts": ZERO, "dueBacklog": 0, "oldestDueAgeSeconds": 0.0}
        ],
    }
    # Keys in the documented order, for people reading it with curl.
    assert list(response.get_json()) == [
        "counts",
        "dueBacklog",
        "oldestDueAgeSeconds",
        "lateness",
        "queues",
    ]


def test_one_task_in_each_status_and_the_lateness_of_the_attempts_made(
    client, tasks_by_status, store
) -> None:
    stats = client.get("/api/v1/stats").get_json()

    assert stats["counts"] == dict.fromkeys(STATUSES, 1)
    # The pending task is due in 2099; the running one was claimed: nothing is due.
    assert (stats["dueBacklog"], stats["oldestDueAgeSeconds"]) == (0, 0.0)
    [queue] = stats["queues"]
    assert queue == {
        "queue": "default",
        "counts": stats["counts"],
        "dueBacklog": 0,
        "oldestDueAgeSeconds": 0.0,
    }
    # Two attempts were delivered (resolved, stale) and measured their lateness.
    lateness = stats["lateness"]
    assert lateness["windowSeconds"] == 300
    assert isinstance(lateness["p50Ms"], float) and isinstance(lateness["p99Ms"], float)
    assert 0 <= lateness["p50Ms"] <= lateness["p99Ms"] < 10_000
    assert (lateness["p50Ms"], lateness["p99Ms"]) == store.lateness_percentiles(300)


def test_the_due_backlog_counts_what_is_due_by_the_database_clock(client, store, db) -> None:
    now = db.now()
    store.enqueue(
        [NewTask(webhook_url=NOWHERE, execute_at=now - timedelta(seconds=s)) for s in (90, 5)]
        + [NewTask(webhook_url=NOWHERE, execute_at=now + timedelta(hours=1))]
    )

    stats = client.get("/api/v1/stats").get_json()

    assert stats["counts"]["pending"] == 3
    assert stats["dueBacklog"] == 2
    assert 90.0 <= stats["oldestDueAgeSeconds"] < 100.0
    assert stats["queues"][0]["oldestDueAgeSeconds"] == stats["oldestDueAgeSeconds"]


def test_stats_match_what_the_store_counts(client, tasks_by_status, store) -> None:
    stats = client.get("/api/v1/stats").get_json()
    [default] = store.queue_counts()
    assert stats["counts"] == {s.value: n for s, n in default.counts.items()}
    assert stats["dueBacklog"] == default.due_backlog


@pytest.fixture
def unreachable_client(unreachable_database):
    settings = Settings(database_url=unreachable_database.url, load_entry_points=False)
    app = create_app(
        settings,
        store=unreachable_database.store,
        plugins=PluginManager(settings),
        test_config={"TESTING": True},
    )
    return app.test_client()


def test_stats_are_503_while_the_database_is_unreachable(
    unreachable_client, unreachable_database
) -> None:
    response = unreachable_client.get("/api/v1/stats")
    assert_error(response, 503, "unavailable")
    assert unreachable_database.internals not in response.get_data(as_text=True)


def test_stats_take_no_other_method(client) -> None:
    assert_error(client.post("/api/v1/stats", json={}), 405, "method_not_allowed")
