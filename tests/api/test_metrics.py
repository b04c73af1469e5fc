"""GET /metrics: SPEC's names and labels, fed by the engine, the DB gauges read at scrape."""

from __future__ import annotations

import logging

import pytest

from scheduler_core.api import create_app
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.plugins.metrics import DURATION_BUCKETS, LATENESS_BUCKETS
from scheduler_core.settings import Settings
from tests.api.helpers import FUTURE, NOWHERE, STATUSES
from tests.conftest import set_config
from tests.dispatch.helpers import enqueue
from tests.support.metrics import Scrape, parse

COUNTERS = {"scheduler_tasks_enqueued": ["queue"], "scheduler_attempts": ["queue", "outcome"]}
HISTOGRAMS = {
    "scheduler_delivery_duration_seconds": ["queue"],
    "scheduler_lateness_seconds": ["queue"],
}
GAUGES = {
    "scheduler_tasks": ["queue", "status"],
    "scheduler_due_backlog": ["queue"],
    "scheduler_oldest_due_age_seconds": ["queue"],
}
# Per-host backpressure: no series until a host is throttled (tests/hosts).
HOST_FAMILIES = {
    "scheduler_host_blocked_seconds": "gauge",
    "scheduler_host_max_concurrent": "gauge",
    "scheduler_host_max_per_second": "gauge",
    "scheduler_host_throttled": "counter",
}


def scrape(client) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.get_data(as_text=True))


def test_a_fresh_scrape_shows_every_metric_spec_names_with_its_labels(client) -> None:
    metrics = scrape(client)

    expected_types = (
        dict.fromkeys(COUNTERS, "counter")
        | dict.fromkeys(HISTOGRAMS, "histogram")
        | dict.fromkeys(GAUGES, "gauge")
        | HOST_FAMILIES
    )
    assert metrics.types == expected_types  # nothing else: no *_created series either
    for outcome in ("resolved", "failed", "lost"):  # at 0 from the start, so rate() works
        assert metrics.value("scheduler_attempts_total", queue="default", outcome=outcome) == 0
    assert metrics.value("scheduler_tasks_enqueued_total", queue="default") == 0
    for name in HISTOGRAMS:
        assert metrics.value(f"{name}_count", queue="default") == 0
    for status in STATUSES:
        assert metrics.value("scheduler_tasks", queue="default", status=status) == 0
    assert metrics.value("scheduler_due_backlog", queue="default") == 0
    assert metrics.value("scheduler_oldest_due_age_seconds", queue="default") == 0


def test_histogram_buckets_reach_from_a_millisecond_to_the_longest_timeout(client) -> None:
    metrics = scrape(client)
    lateness = sorted(
        float(dict(labels)["le"])
        for name, labels in metrics.samples
        if name == "scheduler_lateness_seconds_bucket"
    )
    assert lateness[0] == 0.001 and lateness[-1] == float("inf")
    assert lateness[:-1] == list(LATENESS_BUCKETS)
    assert DURATION_BUCKETS[-1] == 1800.0  # http_callback_timeout_ms at most 1 800 000
    assert min(DURATION_BUCKETS) <= 0.005


def test_enqueued_counts_tasks_created_and_not_idempotent_repeats_nor_refusals(client) -> None:
    enqueue(client, NOWHERE, executeAt=FUTURE, idempotencyKey="once")
    repeat = client.post(
        "/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": FUTURE, "idempotencyKey": "once"}
    )
    assert repeat.status_code == 200
    batch = client.post(
        "/api/v1/tasks",
        json=[
            {"webhookUrl": NOWHERE, "executeAt": FUTURE},
            {"webhookUrl": NOWHERE, "executeAt": FUTURE, "idempotencyKey": "once"},
            {"webhookUrl": NOWHERE, "executeAt": FUTURE},
        ],
    )
    assert batch.status_code == 201
    assert client.post("/api/v1/tasks", json={"webhookUrl": "ftp://x"}).status_code == 400

    assert scrape(client).value("scheduler_tasks_enqueued_total", queue="default") == 3


def test_every_attempt_is_counted_by_outcome_with_its_duration_and_lateness(
    client, dispatcher, receiver, store
) -> None:
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/ok", statuses=[200])
    receiver.behave("/flaky", statuses=[500, 200])
    receiver.behave("/slow", statuses=[200], delay=0.3)
    for path in ("/ok", "/ok", "/flaky", "/slow"):
        enqueue(client, receiver.url(path))

    dispatcher.tick()  # 4 attempts: 3 resolve, /flaky fails once
    dispatcher.tick()  # /flaky again: resolved

    metrics = scrape(client)
    assert metrics.value("scheduler_attempts_total", queue="default", outcome="resolved") == 4
    assert metrics.value("scheduler_attempts_total", queue="default", outcome="failed") == 1
    assert len(receiver.calls()) == 5
    duration = "scheduler_delivery_duration_seconds"
    assert metrics.value(f"{duration}_count", queue="default") == 5
    # The /slow answer took 0.3 s: in no bucket below 0.25 s, and counted in the sum.
    assert metrics.value(f"{duration}_bucket", queue="default", le="0.25") == 4
    assert metrics.value(f"{duration}_sum", queue="default") >= 0.3
    assert metrics.value("scheduler_lateness_seconds_count", queue="default") == 5
    # Every task was due when the tick began: a few ms late at most, on a quiet machine.
    assert metrics.value("scheduler_lateness_seconds_bucket", queue="default", le="+Inf") == 5
    assert metrics.value("scheduler_tasks", queue="default", status="resolved") == 4


def test_a_lost_attempt_is_counted_where_the_reaper_records_it(
    client, dispatcher, store, db
) -> None:
    created = enqueue(client, NOWHERE)
    [claimed] = store.claim_due(10, 60_000)  # a dispatcher that will die holding it
    db.expire_lease(claimed.id)

    dispatcher.tick()  # the reaper finds it; its retry is due at once and fails too

    metrics = scrape(client)
    assert metrics.value("scheduler_attempts_total", queue="default", outcome="lost") == 1
    history = client.get(f"/api/v1/tasks/{created['id']}/attempts").json["attempts"]
    assert history[0]["outcome"] == "lost"
    # A lost attempt measured nothing: not in the histograms.
    attempted = metrics.value("scheduler_attempts_total", queue="default", outcome="failed")
    assert metrics.value("scheduler_delivery_duration_seconds_count", queue="default") == attempted


def test_the_database_gauges_are_the_stats_and_the_sql_counts(client, tasks_by_status, db) -> None:
    metrics = scrape(client)
    stats = client.get("/api/v1/stats").get_json()
    rows = dict(db.execute("SELECT status, count(*) FROM scheduler_tasks GROUP BY status"))
    for status in STATUSES:
        shown = metrics.value("scheduler_tasks", queue="default", status=status)
        assert shown == stats["counts"][status] == rows.get(status, 0) == 1
    assert metrics.value("scheduler_due_backlog", queue="default") == stats["dueBacklog"]


def test_metrics_stay_open_and_answer_any_host_when_api_keys_are_set(clean_database, store):
    settings = Settings(database_url=clean_database, api_keys=("k",), load_entry_points=False)
    app = create_app(settings, store=store, plugins=PluginManager(settings))
    client = app.test_client()
    response = client.get("/metrics", headers={"Host": "10.0.0.7:8080"})
    assert response.status_code == 200
    assert "scheduler_tasks{" in response.get_data(as_text=True)
    assert client.get("/api/v1/stats").status_code == 401


def test_two_apps_in_one_process_keep_their_own_counters(clean_database, store) -> None:
    apps = []
    for _ in range(2):
        settings = Settings(database_url=clean_database, load_entry_points=False)
        apps.append(create_app(settings, store=store, plugins=PluginManager(settings)))
    first, second = (app.test_client() for app in apps)
    enqueue(first, NOWHERE, executeAt=FUTURE)

    assert scrape(first).value("scheduler_tasks_enqueued_total", queue="default") == 1
    assert scrape(second).value("scheduler_tasks_enqueued_total", queue="default") == 0
    # The database gauges agree: they are read from the one database.
    assert scrape(second).value("scheduler_tasks", queue="default", status="pending") == 1


def test_a_database_error_leaves_out_the_gauges_and_logs_one_line(
    unreachable_database, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=unreachable_database.url, load_entry_points=False)
    app = create_app(settings, store=unreachable_database.store, plugins=PluginManager(settings))

    with caplog.at_level(logging.WARNING):
        metrics = scrape(app.test_client())

    assert "scheduler_tasks" not in metrics.types
    assert "scheduler_due_backlog" not in metrics.types
    assert metrics.value("scheduler_attempts_total", queue="default", outcome="resolved") == 0
    [line] = [r for r in caplog.records if "/metrics" in r.getMessage()]
    assert "database gauges left out" in line.getMessage()
    assert line.exc_info is None  # one line, no traceback
