"""Many dispatchers: one API-only server and three workers race over 2000 tasks on one
PostgreSQL database; each task is delivered exactly once and no process crashes.

(tests/cli/test_worker.py races two workers and a server over 300 tasks on both
backends; throughput figures belong to the benchmark in tests/soak.)
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter

import pytest

from tests.cli.conftest import STARTUP_TIMEOUT, Processes, api, db_tasks, set_db_config
from tests.faults.receiver import CountingReceiver
from tests.store.databases import query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TASKS = 2000
BATCH = 500
WORKERS = 3
RESOLVED_LINE = re.compile(r"task=(\S+) attempt=1 resolved status=200")


def test_three_workers_deliver_each_of_2000_tasks_exactly_once(
    clean_postgres: str, processes: Processes, counting_receiver: CountingReceiver
) -> None:
    set_db_config(clean_postgres, select_size=100, base_interval_ms=50)
    server = processes.serve(clean_postgres, "--no-dispatcher")
    workers = [processes.worker(clean_postgres, wait=False) for _ in range(WORKERS)]
    for worker in workers:
        worker.wait_for_log("worker running", STARTUP_TIMEOUT)
    everyone = [server, *workers]

    ids: list[str] = []
    began = time.monotonic()
    for start in range(0, TASKS, BATCH):
        response = api(
            server,
            "POST",
            "/api/v1/tasks",
            json=[
                {"webhookUrl": counting_receiver.url("/many"), "payload": {"n": n}}
                for n in range(start, start + BATCH)
            ],
        )
        assert response.status_code == 201, response.text
        ids.extend(t["id"] for t in response.json()["tasks"])
    assert len(set(ids)) == TASKS

    counting_receiver.wait_for_tasks(set(ids), timeout=150)
    wait_until(
        lambda: sum(t["status"] == "resolved" for t in db_tasks(clean_postgres).values()) == TASKS,
        timeout=60,
        interval=0.2,
        message=f"for all {TASKS} tasks to be resolved",
    )
    elapsed = time.monotonic() - began
    assert [p.proc.poll() for p in everyone] == [None] * len(everyone), "a process died"
    for process in everyone:
        process.signal(signal.SIGTERM)
    assert [p.wait_exit(timeout=STARTUP_TIMEOUT) for p in everyone] == [0] * len(everyone)

    delivered = Counter(c.task_id for c in counting_receiver.calls())
    assert set(delivered) == set(ids)
    assert sorted(task_id for task_id, n in delivered.items() if n > 1) == []
    assert {t["attempts"] for t in db_tasks(clean_postgres).values()} == {1}
    assert query(
        clean_postgres, "SELECT count(*), count(*) FILTER (WHERE status_code = 200)"
        " FROM scheduler_attempts",
    ) == [(TASKS, TASKS)]  # fmt: skip
    # Who delivered what, from the logs: the three workers together, each task once.
    by_worker = [Counter(RESOLVED_LINE.findall(w.output)) for w in workers]
    share = [len(c) for c in by_worker]
    print(f"{TASKS} tasks in {elapsed:.1f}s; per worker: {share}")
    assert sum(by_worker, Counter()) == Counter(set(ids))
    assert sum(n > 0 for n in share) >= 2, f"the workers did not share the work: {share}"
    assert "resolved" not in server.output
    for process in everyone:
        for trouble in ("Traceback", "tick failed", " ERROR ", "database unavailable"):
            assert trouble not in process.output, process.output
