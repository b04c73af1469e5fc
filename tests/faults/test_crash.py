"""Crash: a dispatcher killed with SIGKILL at a random moment of a busy delivery run.

A few hundred tasks flow to a receiver that takes 50..400 ms over each; the process that
delivers them (a `scheduler worker`, or a `scheduler serve` with its dispatcher) is killed
with SIGKILL while callbacks are in flight, and a new one is started. Afterwards every task
is resolved, none is left running, the receiver saw every task, and each task's
`attempts` is the calls the receiver saw for it plus the attempts lost in the crash, which
the attempt history names "lease expired".

tests/cli/test_serve.py shows the single-task case (redelivered only once the lease ran
out, payload unchanged); this one kills at a random point of a run, on both backends.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.cli.conftest import STARTUP_TIMEOUT, Processes, db_tasks, enqueue, set_db_config
from tests.faults.receiver import CountingReceiver
from tests.store.databases import query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TASKS = 300
SELECT_SIZE = 50
TIMEOUT_MS = 1000  # the lease is 6 s
LEASE_EXPIRED = "lease expired"


def _settled_tasks(database_url: str) -> dict[str, dict]:
    """The tasks once two reads 0.3 s apart agree."""
    last: list[dict[str, dict]] = [db_tasks(database_url)]

    def settled() -> bool:
        time.sleep(0.3)
        now = db_tasks(database_url)
        same = now == last[0]
        last[0] = now
        return same

    wait_until(settled, timeout=15, interval=0, message="for the database to settle")
    return last[0]


@pytest.mark.parametrize("role", ["worker", "server"])
def test_a_dispatcher_killed_at_a_random_moment_loses_no_task_and_counts_every_attempt(
    clean_database: str, processes: Processes, counting_receiver: CountingReceiver, role: str
) -> None:
    seed = random.randrange(2**32)
    print(f"random seed {seed}")  # shown when the test fails: replay with it
    rng = random.Random(seed)
    set_db_config(
        clean_database,
        http_callback_timeout_ms=TIMEOUT_MS,
        base_interval_ms=50,
        select_size=SELECT_SIZE,
    )
    if role == "worker":
        api_server = processes.serve(clean_database, "--no-dispatcher")
        victim = processes.worker(clean_database)
    else:
        api_server = victim = processes.serve(clean_database)
    bodies = [
        {
            "webhookUrl": counting_receiver.url("/crash"),
            "payload": {"n": n, "delay": round(rng.uniform(0.05, 0.4), 3)},
        }
        for n in range(TASKS)
    ]
    ids = {t["id"] for t in enqueue(api_server, *bodies)}

    # A random moment with a callback surely in flight: one whose answer is still at
    # least 150 ms away, so the tick cannot record its batch before the kill lands.
    kill_after = rng.randint(TASKS // 5, TASKS * 7 // 10)
    wait_until(
        lambda: (
            counting_receiver.count >= kill_after
            and max(counting_receiver.in_flight_remaining(), default=0) >= 0.15
        ),
        timeout=90,
        message=f"for {kill_after} calls with one in flight",
    )
    victim.proc.kill()
    assert victim.wait_exit(timeout=10) == -signal.SIGKILL
    calls_at_kill = counting_receiver.count
    # Running at the kill: each one's attempt in flight is lost (attempt number as value).
    # A COMMIT the victim sent just before it died may still be under way in PostgreSQL:
    # read once nothing changes any more (nobody else writes now).
    lost = {
        task_id: t["attempts"]
        for task_id, t in _settled_tasks(clean_database).items()
        if t["status"] == "running"
    }
    assert lost, "the kill found no delivery in flight"
    assert len(lost) <= SELECT_SIZE

    restarted = (
        processes.worker(clean_database) if role == "worker" else processes.serve(clean_database)
    )
    wait_until(
        lambda: all(t["status"] == "resolved" for t in db_tasks(clean_database).values()),
        timeout=90,
        interval=0.2,
        message="for every task to be resolved after the restart",
    )
    restarted.signal(signal.SIGTERM)  # the restarted process finishes cleanly
    assert restarted.wait_exit(timeout=STARTUP_TIMEOUT) == 0
    print(
        f"{role} killed after {calls_at_kill} of {TASKS} calls with {len(lost)} tasks running;"
        f" {counting_receiver.count} calls in all"
    )

    tasks = db_tasks(clean_database)
    assert set(tasks) == ids
    assert {t["status"] for t in tasks.values()} == {"resolved"}
    assert counting_receiver.seen() == ids, "a task was never delivered"
    history: dict[str, dict[int, tuple[int | None, str | None]]] = {}
    for task_id, attempt, status_code, error, finished in query(
        clean_database,
        "SELECT CAST(task_id AS TEXT), attempt, status_code, error, finished_at"
        " FROM scheduler_attempts",
    ):
        assert finished is not None, f"task {task_id} attempt {attempt} never finished"
        history.setdefault(task_id, {})[attempt] = (status_code, error)
    seen = counting_receiver.attempts_seen()
    answered_ok = counting_receiver.answered_2xx()
    for task_id, task in tasks.items():
        attempts = task["attempts"]
        assert sorted(history[task_id]) == list(range(1, attempts + 1)), task_id
        expired = {
            n for n, (_, error) in history[task_id].items() if LEASE_EXPIRED in (error or "")
        }
        assert len(seen[task_id]) == len(set(seen[task_id])), f"{task_id}: an attempt seen twice"
        assert set(seen[task_id]) <= set(history[task_id]), f"{task_id}: unknown attempt called"
        # Every attempt is either a call the receiver saw or one lost in the crash.
        assert attempts == len(seen[task_id]) + len(expired - set(seen[task_id])), task_id
        for attempt, (status_code, _) in history[task_id].items():
            if attempt in expired:
                continue
            # An outcome was recorded: it came from a call the receiver saw (a slow machine
            # may time one out: a failed attempt, retried), and a 200 only from a 200.
            assert attempt in seen[task_id], (task_id, attempt)
            if status_code == 200:
                assert (task_id, attempt) in answered_ok, (task_id, attempt)
        assert history[task_id][attempts][0] == 200, (task_id, history[task_id])
        if task_id in lost:
            assert expired == {lost[task_id]}, (task_id, history[task_id])
            assert f"task={task_id} lease expired" in restarted.output
        else:
            assert not expired, (task_id, history[task_id])
    assert "Traceback" not in restarted.output
