"""The issue's check: 3 workers x 1 schedule every minute over a simulated hour = 60 runs.

Three store instances (threads, on both backends) or three real processes (PostgreSQL)
on one database step a simulated clock through an hour together, racing on every minute
(a barrier releases them at once), each calling fire_due_schedules(now=t): every fire
time is enqueued exactly once."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler_core.store import open_store
from tests.schedules.conftest import fired_tasks, new_schedule, place
from tests.support.database import TestDatabase

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # across Berlin's spring-forward hour
WORKERS = 3
MINUTES = 60


def readings(worker: int) -> list[datetime]:
    """Worker `worker`'s clock at each step: a minute apart, a few seconds after the fire
    time, each worker a little apart from the others (their clocks never agree exactly)."""
    return [START + timedelta(minutes=m, seconds=1 + 7 * worker) for m in range(MINUTES)]


def fire_steps(url: str, worker: int, barrier: Any, counts: Any) -> None:
    store = open_store(url, pool_size=2)
    try:
        for moment in readings(worker):
            barrier.wait(timeout=60)
            counts[worker] += len(store.fire_due_schedules(now=moment))
    finally:
        store.close()


def check_sixty_runs(db: TestDatabase, created_per_worker: list[int]) -> None:
    tasks = fired_tasks(db)
    expected = [START + timedelta(minutes=m) for m in range(MINUTES)]
    assert [t["execute_at"] for t in tasks] == expected
    keys = Counter(t["key"] for t in tasks)
    assert len(keys) == MINUTES and max(keys.values()) == 1
    assert sum(created_per_worker) == MINUTES  # what the workers were told they created
    last = db.time(db.execute("SELECT last_fire_at FROM scheduler_schedules")[0][0])
    assert last == expected[-1]


def test_three_store_instances_racing_through_a_simulated_hour_fire_60_times(
    clean_database: str, db: TestDatabase
) -> None:
    setup = open_store(clean_database, pool_size=1)
    setup.create_schedule(new_schedule("minutely", "* * * * *", timezone="Europe/Berlin"))
    setup.close()
    place(db, "minutely", START)
    barrier = threading.Barrier(WORKERS)
    counts = [0] * WORKERS
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            fire_steps(clean_database, worker, barrier, counts)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    check_sixty_runs(db, counts)


def _process_main(url: str, worker: int, barrier: Any, counts: Any) -> None:
    fire_steps(url, worker, barrier, counts)


def test_three_processes_racing_through_a_simulated_hour_fire_60_times(
    postgres_url: str,
) -> None:
    db = TestDatabase(postgres_url)
    db.reset()
    setup = open_store(postgres_url, pool_size=1)
    setup.create_schedule(new_schedule("minutely", "* * * * *", timezone="Europe/Berlin"))
    setup.close()
    place(db, "minutely", START)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    counts = context.Array("i", WORKERS)
    processes = [
        context.Process(target=_process_main, args=(postgres_url, w, barrier, counts))
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * WORKERS
    check_sixty_runs(db, list(counts))
