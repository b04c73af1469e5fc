"""The cost of one claim as the table grows: `store.claim_due(100, 60000)` with 10^4 and
10^6 pending rows (10^4 and 10^5 with --quick) that are not due yet.

A fresh database migrated by `scheduler migrate` is filled straight with SQL
(generate_series on PostgreSQL, a recursive CTE on SQLite): the pending rows, due in 2099,
one second apart, and 300 rows due a minute ago. PostgreSQL then gets the VACUUM ANALYZE
autovacuum would soon run; SQLite gets nothing (the scheduler never analyzes it). The
benchmark opens the store in its own process (`scheduler_core.store.open_store`) and times
`claim_due(100, 60000)` repeatedly; between two claims, untimed, the 100 claimed rows go
back to pending and their attempt rows are deleted, so every claim finds the same table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.cluster import database, migrate
from benchmarks.common import (
    SQLITE_NOW_US,
    Database,
    add_backend_argument,
    backends_from,
    failed_note,
    log_folder,
    progress,
)
from benchmarks.report import Column, Report, fmt_int, fmt_ms, fmt_ratio
from benchmarks.stats import percentile

NAME = "claim"
CLAIM = 100
LEASE_MS = 60_000
DUE_ROWS = 300
FAR_FUTURE_US = 4_070_908_800 * 1_000_000  # 2099-01-01T00:00:00Z in microseconds

COLUMNS = (
    Column("backend", "backend"),
    Column("pending", "pending rows", fmt_int, numeric=True),
    Column("due", "due rows", numeric=True),
    Column("claims", "claims", numeric=True),
    Column("min_ms", "min ms", fmt_ms, numeric=True),
    Column("p50_ms", "p50 ms", fmt_ms, numeric=True),
    Column("p99_ms", "p99 ms", fmt_ms, numeric=True),
    Column("max_ms", "max ms", fmt_ms, numeric=True),
    Column("ratio", "p50 vs smallest", fmt_ratio, numeric=True),
    Column("fill_s", "fill s", lambda v: "" if v is None else f"{v:.1f}", numeric=True),
    Column("note", "note"),
)

DEFINITIONS = {
    "ms": "wall time of one store.claim_due(100, 60000) call in the benchmark process "
    "(its transaction and commit included), nearest-rank percentiles",
    "p50 vs smallest": "p50 at this size / p50 with the fewest pending rows, same backend",
    "fill s": "time to insert the rows with SQL, indexes and VACUUM ANALYZE included",
}

# {start} + i * {step} for i in 1..count: due times one step apart.
PG_FILL = """
INSERT INTO scheduler_tasks (webhook_url, payload, execute_at, next_attempt_at)
SELECT 'http://127.0.0.1:9/x', '{{"n":1}}', t, t
FROM (SELECT {start} + i * {step} AS t FROM generate_series(1, %(count)s) AS i) AS s
"""
SQLITE_FILL = """
INSERT INTO scheduler_tasks
    (id, webhook_url, payload, execute_at, next_attempt_at, created_at, updated_at)
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :count)
SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
             || substr(h, 18, 3) || '-' || substr(h, 21, 12)),
       'http://127.0.0.1:9/x', '{{"n":1}}', {start} + i * {step}, {start} + i * {step},
       {now}, {now}
FROM (SELECT i, hex(randomblob(16)) AS h FROM s)
"""
RESET = (
    "UPDATE scheduler_tasks SET status = 'pending', attempts = 0, lease_expires_at = NULL"
    " WHERE status = 'running'",
    "DELETE FROM scheduler_attempts",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_argument(parser)
    parser.add_argument(
        "--claims", type=int, default=None, help="timed claims per case (default 50; 30 quick)"
    )


def fill(db: Database, pending: int) -> float:
    """Insert the pending and the due rows; return how long it took."""
    started = time.perf_counter()
    if db.backend == "postgresql":
        future = PG_FILL.format(start="timestamptz '2099-01-01Z'", step="interval '1 second'")
        due = PG_FILL.format(start="(now() - interval '1 minute')", step="interval '1 millisecond'")
        db.execute(future, {"count": pending})
        db.execute(due, {"count": DUE_ROWS})
        db.execute("VACUUM ANALYZE scheduler_tasks")
    else:
        now = SQLITE_NOW_US
        future = SQLITE_FILL.format(start=FAR_FUTURE_US, step=1_000_000, now=now)
        due = SQLITE_FILL.format(start=f"({now} - 60000000)", step=1000, now=now)
        db.execute(future, {"count": pending})
        db.execute(due, {"count": DUE_ROWS})
    return time.perf_counter() - started


def measure(db_url: str, claims: int) -> tuple[list[float], str | None]:
    """Time `claims` claims of CLAIM tasks, resetting the table between them."""
    from scheduler_core.store import open_store

    store = open_store(db_url, pool_size=2)
    db = Database(db_url)
    timings: list[float] = []
    problem = None
    try:
        for i in range(claims + 1):  # the first one warms up the connection: not counted
            started = time.perf_counter()
            claimed = store.claim_due(CLAIM, LEASE_MS)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if len(claimed) != CLAIM:
                problem = f"claim {i} returned {len(claimed)} tasks, not {CLAIM}"
                break
            if i:
                timings.append(elapsed_ms)
            for statement in RESET:
                db.execute(statement)
    finally:
        db.close()
        store.close()
    return timings, problem


def case(backend: str, pending: int, claims: int, logs: Path) -> dict[str, Any]:
    with database(backend) as db_url:
        migrate(db_url, logs, f"claim-{backend}-{pending}")
        db = Database(db_url)
        try:
            fill_s = fill(db, pending)
            count = int(db.scalar("SELECT count(*) FROM scheduler_tasks"))
        finally:
            db.close()
        if count != pending + DUE_ROWS:
            return {"note": failed_note(f"{count} rows after the fill")}
        timings, problem = measure(db_url, claims)
    ordered = sorted(timings)
    row: dict[str, Any] = {"claims": len(ordered), "fill_s": fill_s, "note": "ok"}
    if ordered:
        row |= {
            "min_ms": ordered[0],
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
            "max_ms": ordered[-1],
        }
    if problem:
        row["note"] = failed_note(problem)
    return row


def run(args: argparse.Namespace) -> Report:
    sizes = (10_000, 100_000) if args.quick else (10_000, 1_000_000)
    claims = args.claims if args.claims is not None else (30 if args.quick else 50)
    backends = backends_from(args.backend)
    report = Report(NAME, COLUMNS)
    report.meta["settings"] = {
        "claim": CLAIM,
        "lease_ms": LEASE_MS,
        "claims_per_case": claims,
        "sizes": "/".join(f"{s:,}" for s in sizes),
        "backends": ",".join(backends),
    }
    with log_folder(report) as logs:
        for backend in backends:
            rows = []
            for pending in sizes:
                progress(NAME, f"{backend}: {pending:,} pending rows")
                key = {"backend": backend, "pending": pending, "due": DUE_ROWS}
                try:
                    rows.append({**key, **case(backend, pending, claims, logs)})
                except Exception as exc:
                    rows.append({**key, "note": failed_note(exc)})
            smallest = rows[0].get("p50_ms")
            for row in rows[1:]:
                if smallest and row.get("p50_ms") is not None:
                    row["ratio"] = row["p50_ms"] / smallest
            report.rows += rows
    report.meta["definitions"] = DEFINITIONS
    return report
