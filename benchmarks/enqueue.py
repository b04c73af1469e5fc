"""Single-task enqueue over HTTP, against a no-op JSON endpoint on the same stack.

`POST /api/v1/tasks` with one small task due in 2099 (nothing is ever delivered; the
server runs with `--no-dispatcher` all the same), from 8 and from 32 client threads, each
with its own keep-alive `requests.Session`, for a fixed time. The baseline is a Flask app
served by waitress with the same 8 server threads (`benchmarks.noop_server`) whose handler
only parses the same body and answers 201, hit by the same client code. ratio = the
scheduler's tasks/s / the no-op's requests/s in the same run. The client runs on the same
two cores as the server on both sides, which is why the ratio is the figure to read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.cluster import SchedulerCluster, Server, database
from benchmarks.common import (
    FUTURE_TASK,
    Database,
    add_backend_argument,
    backends_from,
    failed_note,
    json_bytes,
    log_folder,
    progress,
)
from benchmarks.load import post_load
from benchmarks.procfs import CpuMeter
from benchmarks.report import Column, Report, fmt_int, fmt_ms, fmt_pct, fmt_ratio

NAME = "enqueue"
THREADS = (8, 32)
BODY = json_bytes(FUTURE_TASK)

COLUMNS = (
    Column("backend", "backend"),
    Column("server", "server"),
    Column("threads", "threads", numeric=True),
    Column("requests", "requests", fmt_int, numeric=True),
    Column("rate", "req/s", fmt_int, numeric=True),
    Column("ratio", "vs no-op", fmt_ratio, numeric=True),
    Column("p50_ms", "p50 ms", fmt_ms, numeric=True),
    Column("p99_ms", "p99 ms", fmt_ms, numeric=True),
    Column("server_cpu_ms", "server cpu ms/req", fmt_ms, numeric=True),
    Column("server_cpu_pct", "server %cpu", fmt_pct, numeric=True),
    Column("note", "note"),
)

DEFINITIONS = {
    "req/s": "201 answers per second, counted from when every client thread is warm "
    "(2 requests each) until the last answer after `seconds`",
    "vs no-op": "the scheduler's req/s / the no-op endpoint's req/s at the same thread count",
    "server cpu ms/req": "the server process's utime+stime (/proc/<pid>/stat) over the "
    "timed window / requests answered",
    "server %cpu": "the same CPU / the window's wall time (100 = one core of two)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_argument(parser)
    parser.add_argument(
        "--seconds", type=float, default=None, help="per case (default 10; 2 with --quick)"
    )


def measure(url: str, pid: int, threads: int, seconds: float) -> dict[str, Any]:
    """One case: the load, the latencies, and the server's CPU over the timed window."""
    meter = CpuMeter(lambda: [pid])
    result = post_load(url, BODY, threads, expect=201, seconds=seconds, window=meter)
    cpu_s = meter.seconds([pid])
    row: dict[str, Any] = {
        "threads": threads,
        "requests": result.ok,
        "seconds": result.elapsed_s,
        "rate": result.rate,
        "p50_ms": result.latency(50),
        "p99_ms": result.latency(99),
        "server_cpu_s": cpu_s,
        "server_cpu_ms": cpu_s * 1000 / result.ok if cpu_s is not None and result.ok else None,
        "server_cpu_pct": meter.percent([pid]),
        "errors": result.errors,
        "note": "ok",
    }
    if result.errors:
        row["note"] = failed_note(f"{result.errors} errors, first: {result.first_error}")
    return row


def noop_rows(seconds: float, logs: Path) -> list[dict[str, Any]]:
    key = {"backend": "-", "server": "no-op flask+waitress"}
    try:
        server = Server("enqueue-noop", "benchmarks.noop_server", logs)
    except Exception as exc:
        return [{**key, "threads": t, "note": failed_note(exc)} for t in THREADS]
    rows = []
    try:
        for threads in THREADS:
            progress(NAME, f"no-op endpoint, {threads} threads")
            url = f"{server.base_url}/api/v1/tasks"
            try:
                rows.append({**key, **measure(url, server.pid, threads, seconds)})
            except Exception as exc:
                rows.append({**key, "threads": threads, "note": failed_note(exc)})
    finally:
        server.stop()
    return rows


def scheduler_rows(backend: str, seconds: float, logs: Path) -> list[dict[str, Any]]:
    key = {"backend": backend, "server": "scheduler serve"}
    rows: list[dict[str, Any]] = []
    try:
        with database(backend) as db_url:
            cluster = SchedulerCluster("api", db_url, logs, f"enqueue-{backend}")
            try:
                cluster.start()
                url = f"{cluster.api_url}/api/v1/tasks"
                for threads in THREADS:
                    progress(NAME, f"{backend}, {threads} threads")
                    try:
                        row = measure(url, cluster.api.pid, threads, seconds)
                    except Exception as exc:
                        row = {"threads": threads, "note": failed_note(exc)}
                    rows.append({**key, **row})
                stored = count_tasks(db_url)
                sent = sum(r.get("requests") or 0 for r in rows)
                if stored < sent:
                    rows[-1]["note"] = failed_note(f"{sent} tasks answered 201, {stored} stored")
            finally:
                problems = cluster.stop()
                if problems and rows:
                    rows[-1]["note"] = failed_note("; ".join(problems))
    except Exception as exc:
        done = {r["threads"] for r in rows}
        rows += [{**key, "threads": t, "note": failed_note(exc)} for t in THREADS if t not in done]
    return rows


def count_tasks(db_url: str) -> int:
    db = Database(db_url)
    try:
        return int(db.scalar("SELECT count(*) FROM scheduler_tasks"))
    finally:
        db.close()


def run(args: argparse.Namespace) -> Report:
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)
    backends = backends_from(args.backend)
    report = Report(NAME, COLUMNS)
    report.meta["settings"] = {
        "seconds": seconds,
        "threads": "/".join(map(str, THREADS)),
        "server_threads": 8,
        "backends": ",".join(backends),
    }
    with log_folder(report) as logs:
        baseline = noop_rows(seconds, logs)
        report.rows += baseline
        for backend in backends:
            report.rows += scheduler_rows(backend, seconds, logs)
    noop_rate = {r["threads"]: r.get("rate") for r in baseline if r["note"] == "ok"}
    for row in report.rows:
        base = noop_rate.get(row["threads"])
        if row.get("rate") is not None and base:
            row["ratio"] = row["rate"] / base
    report.meta["definitions"] = DEFINITIONS
    return report
