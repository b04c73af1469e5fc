"""Batch enqueue over HTTP, against a raw multi-row INSERT of the same rows.

`POST /api/v1/tasks` with a JSON array of 500 tasks (the enqueue benchmark's task, due in
2099), from 2 client threads, until N tasks were sent; `scheduler serve --no-dispatcher`
on a fresh database. The baseline, on another fresh database migrated by `scheduler
migrate`: the same N rows inserted straight into `scheduler_tasks` by 2 threads, each with
its own connection, 500 rows per statement and one commit per 500 rows: psycopg2's
`execute_values` on PostgreSQL, `executemany` in one `BEGIN IMMEDIATE` transaction on
SQLite (WAL, synchronous=FULL, as the scheduler opens it). ratio = HTTP tasks/s / raw
rows/s.
"""

from __future__ import annotations

import argparse
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.cluster import SchedulerCluster, database, migrate
from benchmarks.common import (
    FUTURE_TASK,
    Database,
    add_backend_argument,
    backends_from,
    failed_note,
    json_bytes,
    log_folder,
    progress,
    sqlite_file,
)
from benchmarks.load import post_load
from benchmarks.procfs import CpuMeter
from benchmarks.report import Column, Report, fmt_int, fmt_pct, fmt_ratio

NAME = "batch"
BATCH = 500
THREADS = 2
BODY = json_bytes([FUTURE_TASK] * BATCH)
FAR_FUTURE_US = 4_070_908_800 * 1_000_000  # 2099-01-01T00:00:00Z in microseconds

COLUMNS = (
    Column("backend", "backend"),
    Column("method", "method"),
    Column("threads", "threads", numeric=True),
    Column("tasks", "tasks", fmt_int, numeric=True),
    Column("seconds", "seconds", lambda v: "" if v is None else f"{v:.2f}", numeric=True),
    Column("rate", "tasks/s", fmt_int, numeric=True),
    Column("ratio", "vs raw", fmt_ratio, numeric=True),
    Column("server_cpu_pct", "server %cpu", fmt_pct, numeric=True),
    Column("client_cpu_pct", "client %cpu", fmt_pct, numeric=True),
    Column("postgres_cpu_pct", "postgres %cpu", fmt_pct, numeric=True),
    Column("note", "note"),
)

DEFINITIONS = {
    "tasks/s": "tasks stored per second, from when both threads are ready until the last "
    "answer or commit",
    "vs raw": "HTTP tasks/s / raw INSERT rows/s on the same backend",
    "%cpu": "utime+stime from /proc over the timed window / its wall time (100 = one core "
    "of two); client = the benchmark process (the HTTP client threads, or the raw "
    "inserts' driver); postgres = this database's backends, the server's background "
    "processes and the postmaster",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_argument(parser)
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="tasks per case, a multiple of 1000 (default 50,000; 10,000 with --quick)",
    )
    parser.add_argument(
        "--webhook-auth",
        default=None,
        help="give every HTTP task this webhookAuth (to measure its encryption, run with "
        "SCHEDULER_ENCRYPTION_KEY set); the raw INSERT stores none",
    )


def http_row(backend: str, tasks: int, logs: Path, body: bytes = BODY) -> dict[str, Any]:
    with database(backend) as db_url:
        cluster = SchedulerCluster("api", db_url, logs, f"batch-{backend}")
        try:
            cluster.start()
            db = Database(db_url)
            try:
                meter = CpuMeter(lambda: [cluster.api.pid, os.getpid(), *db.postgres_pids()])
                before = int(db.scalar("SELECT count(*) FROM scheduler_tasks"))
                result = post_load(
                    f"{cluster.api_url}/api/v1/tasks",
                    body,
                    THREADS,
                    expect=201,
                    requests_total=tasks // BATCH,
                    window=meter,
                )
                stored = int(db.scalar("SELECT count(*) FROM scheduler_tasks"))
                pg_pids = db.postgres_pids()
            finally:
                db.close()
            row = {
                "tasks": result.ok * BATCH,
                "seconds": result.elapsed_s,
                "rate": result.ok * BATCH / result.elapsed_s if result.elapsed_s else None,
                "server_cpu_pct": meter.percent([cluster.api.pid]),
                "client_cpu_pct": meter.percent([os.getpid()]),
                "postgres_cpu_pct": meter.percent(pg_pids) if pg_pids else None,
                "p50_ms": result.latency(50),
                "p99_ms": result.latency(99),
                "note": "ok",
            }
            if result.errors:
                row["note"] = failed_note(f"{result.errors} errors, first: {result.first_error}")
            elif stored - before < result.ok * BATCH:
                row["note"] = failed_note(f"{result.ok * BATCH} answered, {stored - before} stored")
            return row
        finally:
            problems = cluster.stop()
            if problems:
                raise RuntimeError("; ".join(problems))


def raw_inserter(db_url: str, per_thread: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """A function inserting `per_thread` rows, BATCH per statement and per commit, on its
    own connection (opened here, before the clock starts), and one closing it (after the
    CPU meter stopped: a PostgreSQL backend's CPU cannot be read once it exited)."""
    if db_url.startswith("postgresql"):
        import psycopg2
        from psycopg2.extras import execute_values

        conn: Any = psycopg2.connect(db_url)
        payload = json_bytes(FUTURE_TASK["payload"]).decode()
        due = "2099-01-01T00:00:00Z"
        rows = [(FUTURE_TASK["webhookUrl"], payload, due, due)] * BATCH

        def insert_pg() -> None:
            with conn.cursor() as cur:
                for _ in range(per_thread // BATCH):
                    execute_values(
                        cur,
                        "INSERT INTO scheduler_tasks"
                        " (webhook_url, payload, execute_at, next_attempt_at) VALUES %s",
                        rows,
                        template="(%s, %s::json, %s, %s)",
                        page_size=BATCH,
                    )
                    conn.commit()

        return insert_pg, conn.close

    import sqlite3

    # Opened here, used on the inserting thread.
    lite = sqlite3.connect(
        sqlite_file(db_url), timeout=30, isolation_level=None, check_same_thread=False
    )
    lite.execute("PRAGMA journal_mode = WAL")
    lite.execute("PRAGMA synchronous = FULL")
    payload = json_bytes(FUTURE_TASK["payload"]).decode()
    now = int(time.time() * 1_000_000)
    batches = [
        [
            (str(uuid.uuid4()), FUTURE_TASK["webhookUrl"], payload, FAR_FUTURE_US, FAR_FUTURE_US)
            + (now, now)
            for _ in range(BATCH)
        ]
        for _ in range(per_thread // BATCH)
    ]

    def insert_sqlite() -> None:
        for batch in batches:
            lite.execute("BEGIN IMMEDIATE")
            lite.executemany(
                "INSERT INTO scheduler_tasks (id, webhook_url, payload, execute_at,"
                " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            lite.execute("COMMIT")

    return insert_sqlite, lite.close


def raw_row(backend: str, tasks: int, logs: Path) -> dict[str, Any]:
    with database(backend) as db_url:
        migrate(db_url, logs, f"batch-{backend}-raw")
        db = Database(db_url)
        try:
            per_thread = tasks // THREADS
            pairs = [raw_inserter(db_url, per_thread) for _ in range(THREADS)]
            inserters = [insert for insert, _ in pairs]
            errors: list[str] = []

            def guarded(insert: Callable[[], None]) -> None:
                try:
                    insert()
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

            pg_pids = db.postgres_pids()  # the inserters' backends among them
            meter = CpuMeter(lambda: [os.getpid(), *pg_pids])
            threads = [threading.Thread(target=guarded, args=(f,)) for f in inserters]
            meter.start()
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            meter.stop()
            stored = int(db.scalar("SELECT count(*) FROM scheduler_tasks"))
        finally:
            for _, close in pairs:
                close()
            db.close()
    return {
        "tasks": stored,
        "seconds": elapsed,
        "rate": stored / elapsed,
        "client_cpu_pct": meter.percent([os.getpid()]),
        "postgres_cpu_pct": meter.percent(pg_pids) if pg_pids else None,
        "note": failed_note(errors[0]) if errors else "ok",
    }


def run(args: argparse.Namespace) -> Report:
    tasks = args.tasks if args.tasks is not None else (10_000 if args.quick else 50_000)
    tasks = max(BATCH * THREADS, tasks - tasks % (BATCH * THREADS))
    backends = backends_from(args.backend)
    report = Report(NAME, COLUMNS)
    report.meta["settings"] = {
        "tasks": tasks,
        "batch": BATCH,
        "threads": THREADS,
        "backends": ",".join(backends),
    }
    body = BODY
    if args.webhook_auth is not None:
        body = json_bytes([{**FUTURE_TASK, "webhookAuth": args.webhook_auth}] * BATCH)
        report.meta["settings"]["webhook_auth"] = "set"
    with log_folder(report) as logs:
        for backend in backends:
            pair: dict[str, dict[str, Any]] = {}
            http_measure = functools.partial(http_row, body=body)
            for method, measure in (("raw INSERT", raw_row), ("HTTP arrays", http_measure)):
                progress(NAME, f"{backend}: {method}, {tasks} tasks")
                key = {"backend": backend, "method": method, "threads": THREADS}
                try:
                    pair[method] = {**key, **measure(backend, tasks, logs)}
                except Exception as exc:
                    pair[method] = {**key, "note": failed_note(exc)}
            http, raw = pair["HTTP arrays"], pair["raw INSERT"]
            if http.get("rate") and raw.get("rate"):
                http["ratio"] = http["rate"] / raw["rate"]
            report.rows += [raw, http]
    report.meta["definitions"] = DEFINITIONS
    return report
