"""Throughput with 1, 2, 4... dispatcher processes on PostgreSQL.

For each worker count, on a fresh database: `scheduler serve --no-dispatcher` enqueues
the tasks due an hour from now, W `scheduler worker` processes start, then one UPDATE
makes every task due at once. Delivered/s is tasks / (last resolvedAt - that instant),
both by the database clock. The receiver answers 200 to everything. CPU use of the
receiver, the workers and every PostgreSQL backend over the same window shows which
one is the limit on this machine.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from tests.soak.cluster import (
    Reader,
    ReceiverProcess,
    Schedulers,
    cpu_seconds,
    enqueue,
    fresh_database,
    machine_cpu,
)
from tests.soak.soak import BATCH, _reporter

THROUGHPUT_CONFIG = {
    "base_interval_ms": 10,
    "select_size": 500,
    "http_callback_timeout_ms": 5000,
}


@dataclass
class ThroughputRow:
    workers: int
    tasks: int
    seconds: float
    receiver_cpu: float  # share of one core over the window
    workers_cpu: float  # all workers together, in cores
    postgres_cpu: float  # every postgres process, in cores
    machine_busy: float  # share of all cores

    @property
    def per_second(self) -> float:
        return self.tasks / self.seconds if self.seconds else 0.0


def run_throughput(
    tasks: int = 20_000,
    worker_counts: tuple[int, ...] = (1, 2, 4),
    timeout: float = 600.0,
    progress: bool = True,
) -> list[ThroughputRow]:
    say = _reporter(progress)
    rows = []
    for workers in worker_counts:
        rows.append(_one_run(tasks, workers, timeout, say))
        say(f"{workers} worker(s): {rows[-1].per_second:,.0f} delivered/s")
    return rows


def _one_run(tasks: int, workers: int, timeout: float, say: Any) -> ThroughputRow:
    with (
        fresh_database("postgresql", THROUGHPUT_CONFIG) as url,
        tempfile.TemporaryDirectory(prefix="scheduler-throughput-") as folder,
    ):
        receiver = ReceiverProcess(seed=1, fail_rate=0.0, folder=Path(folder))
        schedulers = Schedulers(url)
        reader = Reader(url)
        try:
            schedulers.serve("--no-dispatcher")
            later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            assert schedulers.api_url is not None
            with requests.Session() as session:
                for first in range(0, tasks, BATCH):
                    count = min(BATCH, tasks - first)
                    bodies = [{"webhookUrl": receiver.url(), "executeAt": later}] * count
                    enqueue(session, schedulers.api_url, bodies)
            started = schedulers.workers(workers)
            worker_pids = [p.proc.pid for p in started]
            say(f"{workers} worker(s) up, {tasks:,} tasks waiting; releasing them")
            # This database's backends and PostgreSQL's own (WAL writer, checkpointer...),
            # not other clients' sessions.
            postgres_pids = [
                pid
                for (pid,) in reader.query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " OR backend_type <> 'client backend'"
                )
            ]
            watched = [receiver.pid, *worker_pids, *postgres_pids]
            cpu_before = {pid: cpu_seconds(pid) for pid in watched}
            busy_before, total_before = machine_cpu()
            wall_before = time.monotonic()
            [(released,)] = reader.query(
                "WITH due AS (UPDATE scheduler_tasks SET next_attempt_at = now()"
                " RETURNING 1) SELECT now() FROM due LIMIT 1"
            )
            deadline = time.monotonic() + timeout
            while reader.status_counts().get("resolved", 0) < tasks:
                if dead := schedulers.dead():
                    raise RuntimeError(f"a scheduler process died: {dead}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{workers} worker(s): not done within {timeout}s")
                time.sleep(0.1)
            wall = time.monotonic() - wall_before
            busy_after, total_after = machine_cpu()
            used = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
            [(last,)] = reader.query("SELECT max(resolved_at) FROM scheduler_tasks")
            calls = receiver.stats()["calls"]
            if calls != tasks:
                raise RuntimeError(f"{calls} calls for {tasks} tasks: some delivered twice")
            return ThroughputRow(
                workers=workers,
                tasks=tasks,
                seconds=(last - released).total_seconds(),
                receiver_cpu=used[receiver.pid] / wall,
                workers_cpu=sum(used[pid] for pid in worker_pids) / wall,
                postgres_cpu=sum(used[pid] for pid in postgres_pids) / wall,
                machine_busy=(busy_after - busy_before) / (total_after - total_before),
            )
        finally:
            schedulers.stop_gracefully()
            reader.close()
            schedulers.close()
            receiver.stop()


def throughput_table(rows: list[ThroughputRow]) -> str:
    base = rows[0].per_second if rows else 0.0
    cores = os.cpu_count() or 1
    lines = [
        f"throughput on PostgreSQL: serve --no-dispatcher + W workers, receiver answers 200,"
        f" {cores} cores",
        "",
        f"  {'workers':>7}{'tasks':>9}{'seconds':>9}{'delivered/s':>13}{'vs 1':>7}"
        f"{'receiver CPU':>14}{'workers CPU':>13}{'postgres CPU':>14}{'machine busy':>14}",
    ]
    for r in rows:
        ratio = r.per_second / base if base else 0.0
        lines.append(
            f"  {r.workers:>7}{r.tasks:>9,}{r.seconds:>9.1f}{r.per_second:>13,.0f}{ratio:>6.2f}x"
            f"{r.receiver_cpu:>13.0%}{r.workers_cpu:>12.0%}{r.postgres_cpu:>13.0%}"
            f"{r.machine_busy:>13.0%}"
        )
    lines += [
        "",
        "  CPU columns: core-seconds used per second of the window (100% = one core busy);",
        "  machine busy: share of all cores. When it nears 100%, more workers only share",
        "  the same cores; a receiver near 100% of its one core is the limit.",
    ]
    return "\n".join(lines)
