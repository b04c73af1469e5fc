"""The processes and the database a soak or throughput run is made of, and what is read
from them: a fresh database of either backend, the fast receiver in its own process,
`scheduler serve` and `scheduler worker` subprocesses, /proc samples (RSS, CPU time).

Everything listens on and talks to 127.0.0.1; every process started here is stopped by
its pid when its context ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import requests

from scheduler_core.store import open_store
from scheduler_core.store.sqlite import from_micros, sqlite_path
from tests.support.database import postgres_database, sqlite_url
from tests.support.processes import SchedulerProcess

RECEIVER_SCRIPT = Path(__file__).with_name("receiver.py")
STARTUP_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def fresh_database(backend: str, config: dict[str, int]) -> Iterator[str]:
    """A migrated database of its own with `config` applied, dropped afterwards
    (PostgreSQL: a throwaway database; SQLite: a file in a temporary folder)."""
    if backend == "postgresql":
        with postgres_database("scheduler_soak") as url:
            _prepare(url, config)
            yield url
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="scheduler-soak-") as folder:
            url = sqlite_url(Path(folder), "soak.db")
            _prepare(url, config)
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}: postgresql or sqlite")


def _prepare(url: str, config: dict[str, int]) -> None:
    store = open_store(url, pool_size=1)
    try:
        store.migrate()
        store.update_config(config)
    finally:
        store.close()


class Reader:
    """Plain reads (and the odd write) on the soak database, without taking SQLite's write
    lock for a read as the test helpers do."""

    def __init__(self, url: str):
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None:
            if self.dialect == "postgresql":
                self._conn = psycopg2.connect(self.url)
                self._conn.autocommit = True
            else:
                self._conn = sqlite3.connect(
                    sqlite_path(self.url), timeout=30, isolation_level=None
                )
        return self._conn

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        if self.dialect == "postgresql":
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return cur.fetchall() if cur.description else []
        return list(conn.execute(sql.replace("%s", "?"), params).fetchall())

    def time(self, value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return from_micros(int(value))

    def status_counts(self) -> dict[str, int]:
        rows = self.query("SELECT status, count(*) FROM scheduler_tasks GROUP BY status")
        return {status: int(n) for status, n in rows}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ReceiverProcess:
    """tests/soak/receiver.py in a subprocess of its own."""

    def __init__(self, seed: int, fail_rate: float, folder: Path):
        self.calls_file = folder / "calls.tsv"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(RECEIVER_SCRIPT),
                "--seed",
                str(seed),
                "--fail-rate",
                str(fail_rate),
                "--calls-file",
                str(self.calls_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the receiver prints it before anything else
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.base_url = "http://" + line.split()[-1]
        self.session = requests.Session()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/soak") -> str:
        return self.base_url + path

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self.session.get(self.url("/stats"), timeout=30).json()
        return result

    def calls(self) -> list[tuple[float, str, int, int]]:
        """Every call so far: (arrival time.time(), task id, attempt, status answered)."""
        self.session.get(self.url("/dump"), timeout=60).raise_for_status()
        calls = []
        with self.calls_file.open() as lines:
            for line in lines:
                at, task_id, attempt, status = line.rstrip("\n").split("\t")
                calls.append((float(at), task_id, int(attempt), int(status)))
        return calls

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Schedulers:
    """`scheduler serve` and `scheduler worker` processes on one database, each stopped
    by its pid at the end (SIGTERM, then SIGKILL after 15 s)."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.named: list[tuple[str, SchedulerProcess]] = []
        self.api_url: str | None = None

    def serve(self, *extra: str) -> SchedulerProcess:
        process = SchedulerProcess(["serve", "--port", "0", *extra], self.database_url)
        self.named.append(("serve", process))
        self.api_url = process.wait_listening(STARTUP_TIMEOUT)
        return process

    def workers(self, count: int) -> list[SchedulerProcess]:
        started = [SchedulerProcess(["worker"], self.database_url) for _ in range(count)]
        offset = sum(name.startswith("worker") for name, _ in self.named)
        for n, process in enumerate(started, start=offset + 1):
            self.named.append((f"worker-{n}", process))
        for process in started:
            process.wait_for_log("worker running", STARTUP_TIMEOUT)
        return started

    def dead(self) -> list[str]:
        return [
            f"{name} (pid {p.proc.pid}) exited with {p.proc.returncode}"
            for name, p in self.named
            if p.proc.poll() is not None
        ]

    def stop_gracefully(self, timeout: float = 60.0) -> dict[str, int | None]:
        """SIGTERM to every process at once; each one's exit code (None: it hung)."""
        for _, process in self.named:
            if process.proc.poll() is None:
                process.signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for name, process in self.named:
            try:
                codes[name] = process.wait_exit(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def log_problems(self) -> list[str]:
        """Lines no healthy run writes: tracebacks, failed ticks, database errors."""
        markers = ("Traceback", "tick failed", "database unavailable", " ERROR ")
        problems = []
        for name, process in self.named:
            with process.log_path.open(errors="replace") as log:
                for line in log:
                    if any(marker in line for marker in markers):
                        problems.append(f"{name}: {line.strip()[:300]}")
        return problems

    def close(self, keep_logs: bool = False) -> list[Path]:
        for _, process in self.named:
            process.stop()
        logs = [process.log_path for _, process in self.named]
        if not keep_logs:
            for path in logs:
                path.unlink(missing_ok=True)
        return logs


def enqueue(session: requests.Session, api_url: str, bodies: list[dict[str, Any]]) -> list[str]:
    """POST one array of tasks; their ids in order."""
    response = session.post(
        f"{api_url}/api/v1/tasks", data=json.dumps(bodies).encode(), timeout=120
    )
    if response.status_code != 201:
        raise RuntimeError(f"enqueue failed: {response.status_code} {response.text[:500]}")
    return [task["id"] for task in response.json()["tasks"]]


def rss_kb(pid: int) -> int | None:
    """VmRSS of a live process in kB, from /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS
