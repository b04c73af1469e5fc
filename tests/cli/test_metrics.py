"""/metrics of real processes: `scheduler worker --metrics-port`, and a scrape of a server
and a worker during a real load compared with what the receiver saw and the database."""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any

import pytest
import requests

from tests.cli.conftest import (
    HTTP_TIMEOUT,
    STARTUP_TIMEOUT,
    Processes,
    api,
    db_tasks,
    set_db_config,
)
from tests.support.database import TestDatabase
from tests.support.metrics import Scrape, parse
from tests.support.processes import SchedulerProcess
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

STATUSES = ("pending", "running", "resolved", "stale", "cancelled")
API_KEY = "k-metrics-load-secret-key"
AUTH_SECRET = "Bearer webhook-auth-secret-3141"
URL_PASSWORD = "url-password-2718"
URL_TOKEN = "url-query-token-1618"


def metrics_url(worker: SchedulerProcess) -> str:
    match = worker.wait_for_log(r"metrics on (http://\S+/metrics)", STARTUP_TIMEOUT)
    return match.group(1)


def scrape(url: str) -> tuple[Scrape, str]:
    response = requests.get(url, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text), response.text


def counter(metrics: Scrape, outcome: str) -> float:
    return metrics.value("scheduler_attempts_total", queue="default", outcome=outcome)


def test_a_worker_serves_its_metrics_and_stops_serving_on_sigterm(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    set_db_config(clean_database, base_interval_ms=50)
    server = processes.serve(clean_database, "--no-dispatcher")
    worker = processes.worker(clean_database, "--metrics-port", "0")
    url = metrics_url(worker)
    assert url.startswith("http://127.0.0.1:")  # the default host: loopback only

    response = api(server, "POST", "/api/v1/tasks", json=[{"webhookUrl": receiver.url("/w")}] * 5)
    assert response.status_code == 201
    receiver.wait_for(5, "/w", timeout=30)
    wait_until(
        lambda: counter(scrape(url)[0], "resolved") == 5,
        timeout=30,
        message="for the worker to count 5 resolved attempts",
    )
    from_worker, _ = scrape(url)
    from_server, _ = scrape(f"{server.base_url}/metrics")
    # Counters are per process: the server enqueued, the worker delivered.
    assert from_server.value("scheduler_tasks_enqueued_total", queue="default") == 5
    assert from_worker.value("scheduler_tasks_enqueued_total", queue="default") == 0
    assert counter(from_server, "resolved") == 0
    assert from_worker.value("scheduler_lateness_seconds_count", queue="default") == 5
    # The database gauges are the same wherever they are read.
    wait_until(
        lambda: scrape(url)[0].value("scheduler_tasks", queue="default", status="resolved") == 5,
        timeout=30,
        message="for the stored outcomes to show",
    )
    for metrics in (scrape(url)[0], scrape(f"{server.base_url}/metrics")[0]):
        assert metrics.value("scheduler_tasks", queue="default", status="resolved") == 5
        assert metrics.value("scheduler_due_backlog", queue="default") == 0
    # Only /metrics is served there.
    assert requests.get(url.replace("/metrics", "/"), timeout=HTTP_TIMEOUT).status_code == 404
    assert requests.post(url, timeout=HTTP_TIMEOUT).status_code == 405

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=HTTP_TIMEOUT)


def _no_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return True
    return False


@pytest.mark.skipif(_no_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_the_metrics_port_and_host_come_from_the_environment_too(
    processes: Processes, clean_database: str
) -> None:
    worker = processes.worker(
        clean_database, env={"SCHEDULER_METRICS_PORT": "0", "SCHEDULER_METRICS_HOST": "::1"}
    )
    url = metrics_url(worker)
    assert url.startswith("http://[::1]:")
    assert scrape(url)[0].value("scheduler_due_backlog", queue="default") == 0


def test_a_metrics_port_in_use_stops_the_worker_with_a_clear_error(
    processes: Processes, clean_database: str
) -> None:
    first = processes.worker(clean_database, "--metrics-port", "0")
    port = metrics_url(first).rsplit(":", 1)[1].split("/")[0]

    second = processes.worker(clean_database, "--metrics-port", port, wait=False)

    assert second.wait_exit(timeout=STARTUP_TIMEOUT) != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in second.output
    assert "worker running" not in second.output


def test_a_bad_metrics_port_in_the_environment_is_refused(
    processes: Processes, clean_database: str
) -> None:
    worker = processes.worker(clean_database, env={"SCHEDULER_METRICS_PORT": "http"}, wait=False)
    assert worker.wait_exit(timeout=STARTUP_TIMEOUT) != 0
    assert "SCHEDULER_METRICS_PORT must be a TCP port from 0 to 65535" in worker.output


# -- under load ---------------------------------------------------------------------------


class Scraper:
    """Scrapes every URL again and again until stopped, checking as it goes that each
    scrape parses, that no counter ever goes down, and that no label holds a URL or a
    secret."""

    def __init__(self, urls: list[str]):
        self.urls = urls
        self.count = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._last: dict[tuple[str, str, frozenset[tuple[str, str]]], float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                try:
                    metrics, text = scrape(url)
                except Exception as exc:
                    self.problems.append(f"{url}: {exc!r}")
                    continue
                self.problems.extend(secret_problems(text, metrics))
                for (name, labels), value in metrics.samples.items():
                    if name.endswith(("_total", "_count", "_sum", "_bucket")):
                        key = (url, name, labels)
                        if value < self._last.get(key, 0.0):
                            self.problems.append(f"{url}: {name}{dict(labels)} went down")
                        self._last[key] = value
                self.count += 1
            self._stop.wait(0.05)


def secret_problems(text: str, metrics: Scrape) -> list[str]:
    problems = [
        f"{secret!r} in the scrape"
        for secret in (API_KEY, AUTH_SECRET, "webhook-auth-secret", URL_PASSWORD, URL_TOKEN)
        if secret in text
    ]
    allowed = {"default", *STATUSES, "resolved", "failed", "snoozed", "lost"}
    for value in metrics.label_values():
        if value not in allowed and not _is_bucket_bound(value):
            problems.append(f"unexpected label value {value!r}")
    return problems


def _is_bucket_bound(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def test_counters_gauges_and_stats_agree_with_the_receiver_and_the_database_after_a_load(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    tasks, flaky = 240, 40
    set_db_config(clean_database, base_interval_ms=20, retry_backoff_ms=0, select_size=50)
    env = {"SCHEDULER_API_KEYS": API_KEY}
    key = {"Authorization": f"Bearer {API_KEY}"}
    server = processes.serve(clean_database, env=env)  # with its own dispatcher
    worker = processes.worker(clean_database, "--metrics-port", "0", env=env)
    urls = [f"{server.base_url}/metrics", metrics_url(worker)]
    for n in range(flaky):  # each fails once, then resolves
        receiver.behave(f"/flaky{n}", statuses=[500, 200])
    host = f"127.0.0.1:{receiver.port}"
    bodies = [
        {
            # Credentials in the URL and webhookAuth: none may reach a metric.
            "webhookUrl": (
                f"http://user:{URL_PASSWORD}@{host}/flaky{n}?token={URL_TOKEN}"
                if n < flaky
                else f"http://{host}/ok?token={URL_TOKEN}"
            ),
            "webhookAuth": AUTH_SECRET,
            "payload": {"n": n},
            "idempotencyKey": f"load-{n}",
        }
        for n in range(tasks)
    ]

    with Scraper(urls) as scraper:
        for start in range(0, tasks, 20):  # batches while delivery goes on
            response = api(
                server, "POST", "/api/v1/tasks", json=bodies[start : start + 20], headers=key
            )
            assert response.status_code == 201, response.text
        # Idempotent repeats create nothing and count nothing.
        repeat = api(server, "POST", "/api/v1/tasks", json=bodies[:10], headers=key)
        assert repeat.status_code == 201
        receiver.wait_for(tasks + flaky, timeout=180)
        wait_until(
            lambda: (
                sum(t["status"] == "resolved" for t in db_tasks(clean_database).values()) == tasks
            ),
            timeout=60,
            message=f"for all {tasks} tasks to be resolved",
        )
        wait_until(lambda: scraper.count >= 10, timeout=30, message="for scrapes during load")
    assert scraper.problems == []

    scrapes = [scrape(url) for url in urls]
    for metrics, text in scrapes:
        assert secret_problems(text, metrics) == []
    both = [metrics for metrics, _ in scrapes]
    calls = receiver.calls()
    ok_calls = sum(1 for c in calls if not c.path.startswith("/flaky")) + flaky
    # Counters are per process: summed over the processes, they are what happened.
    assert sum(counter(m, "resolved") for m in both) == ok_calls == tasks
    assert sum(counter(m, "failed") for m in both) == len(calls) - tasks == flaky
    assert sum(counter(m, "lost") for m in both) == 0
    assert sum(m.value("scheduler_tasks_enqueued_total", queue="default") for m in both) == tasks
    for name in ("scheduler_delivery_duration_seconds", "scheduler_lateness_seconds"):
        assert sum(m.value(f"{name}_count", queue="default") for m in both) == len(calls)
    # Both delivered a share (they claim from one database).
    assert all(counter(m, "resolved") > 0 for m in both), [counter(m, "resolved") for m in both]

    # The gauges are the database's: the same from every process, the stats, the SQL.
    stats = api(server, "GET", "/api/v1/stats", headers=key).json()
    rows = dict(
        TestDatabase(clean_database).execute(
            "SELECT status, count(*) FROM scheduler_tasks GROUP BY status"
        )
    )
    for status in STATUSES:
        shown = {m.value("scheduler_tasks", queue="default", status=status) for m in both}
        assert shown == {stats["counts"][status]} == {rows.get(status, 0)}
    assert {m.value("scheduler_due_backlog", queue="default") for m in both} == {0}
    assert stats["dueBacklog"] == 0
    assert stats["lateness"]["p99Ms"] is not None
