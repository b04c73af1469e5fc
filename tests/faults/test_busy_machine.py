"""A busy machine: both cores kept busy by CPU hogs while a real `scheduler serve` delivers
many callbacks to a receiver that answers each after 4 s, with a 5 s callback timeout.

Each attempt has its own deadline from its own start, so every answer that came within
its 5 s counts: every task resolves at its first attempt, each called once. (The engine
this replaced gave a whole tick one deadline, and counted such answers as timeouts.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.cli.conftest import Processes, db_tasks, enqueue, set_db_config
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TASKS = 100


@pytest.fixture
def cpu_hogs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One spinning process per core, stopped by pid after the test."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.send_signal(signal.SIGKILL)
            hog.wait(10)


def test_answers_within_their_own_deadline_resolve_on_a_busy_machine(
    processes: Processes, clean_database: str, receiver: Receiver, cpu_hogs
) -> None:
    set_db_config(clean_database, http_callback_timeout_ms=5000, base_interval_ms=1000)
    receiver.behave("/slow", delay=4.0)
    server = processes.serve(clean_database)
    ids = {t["id"] for t in enqueue(server, *[{"webhookUrl": receiver.url("/slow")}] * TASKS)}
    wait_until(
        lambda: all(t["status"] == "resolved" for t in db_tasks(clean_database).values()),
        timeout=120,
        interval=0.5,
        message=f"for all {TASKS} tasks to resolve",
    )
    assert all(hog.poll() is None for hog in cpu_hogs)  # the machine stayed busy throughout
    tasks = db_tasks(clean_database)
    assert set(tasks) == ids
    assert {(t["attempts"], t["last_status_code"]) for t in tasks.values()} == {(1, 200)}
    calls = Counter(c.header("X-Scheduler-Task-Id") for c in receiver.calls("/slow"))
    assert set(calls) == ids and set(calls.values()) == {1}
