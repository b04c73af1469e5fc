"""Dispatch throughput, from due to resolved, with 1 and 2 workers, against `requests`' own
POST rate to the same receiver and a peer queue doing the same POST per job.

Every case posts to one fast receiver (`benchmarks.fast_receiver`: asyncio, keep-alive,
counts each POST and answers 200) with the same small JSON body, the callback's envelope
(`taskId`, `executeAt`, `attempt`, `payload: {"n": 1}`). N tasks per case (10,000; 2,000
with --quick; --tasks).

- requests: the benchmark process POSTs the body N times from 16 threads (16 gave requests
  its best rate on this 2-core machine; 8, 32 and 64 were no faster), each thread with its
  own keep-alive `requests.Session`; posts/s from when every thread is warm (2 posts each)
  to the last answer.
- scheduler: a fresh database; `scheduler serve --no-dispatcher` and 1 or 2 `scheduler
  worker` (64 delivery threads each) start; the throttle is raised out of the way
  (selectSize 10,000 per baseIntervalMs 1,000: 10,000 starts/s per worker). N tasks are
  enqueued through `POST /api/v1/tasks`, arrays of 500, due in 2099, so nothing is
  delivered yet. PostgreSQL then gets the VACUUM ANALYZE autovacuum would soon run (as in
  the claim benchmark; without statistics the claim sorts every due row instead of
  walking the due index); SQLite gets nothing. Once every worker has opened the database
  (PostgreSQL: a TCP connection to its port; SQLite: the file among its open files) and
  0.5 s more, one SQL UPDATE makes all N due now (execute_at = next_attempt_at = the
  database's now). The benchmark polls the receiver's count every 50 ms until N POSTs
  arrived, then the status counts until all N are resolved (no polling load on the
  database while the tasks go out). tasks/s = N / (last `resolved_at` - first attempt's
  `started_at`), both written by the workers' own statements on the database clock: from
  the first claim (its POST follows at once) to the last outcome stored. The time a
  worker takes to notice the UPDATE (at most its 0.5 s state refresh) is outside the span.
- procrastinate (>= 3, `pip install -e '.[bench]'`; PostgreSQL only): a fresh database
  with procrastinate's schema and N jobs deferred in batches of 500, each POSTing the same
  body to the receiver on a per-thread keep-alive `requests.Session` (`benchmarks.peer`);
  then one worker starts with concurrency 64 and an executor of 64 threads, and fetches
  the jobs as soon as it is up; polled the same way. jobs/s = N / (last `succeeded` event
  - first `started` event) from procrastinate_events: the same database clock and the
  same first-claim-to-last-stored span.

A case fails unless every task (job) ends resolved (succeeded) and the receiver counted
exactly N POSTs for it: a duplicate or a missing call shows. Ratios compare rates measured
in the same run on the same two cores (the receiver, PostgreSQL and the benchmark itself
share them with the process measured): vs requests = tasks/s / requests' posts/s; vs 1
worker = 2 workers' tasks/s / 1 worker's; vs peer = the scheduler's tasks/s on PostgreSQL
/ procrastinate's jobs/s, which the issue wants >= 2 with 1 worker (a note under the
table gives it). CPU is read from /proc/<pid>/stat over the case and divided by its span.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from benchmarks.cluster import (
    ChildProcess,
    ClusterError,
    SchedulerCluster,
    Server,
    database,
    patch_config,
    python_env,
    read_line,
)
from benchmarks.common import (
    FAR_FUTURE,
    SQLITE_NOW_US,
    Database,
    add_backend_argument,
    backends_from,
    failed_note,
    has_file_open,
    json_bytes,
    log_folder,
    progress,
    sqlite_file,
)
from benchmarks.load import post_load
from benchmarks.procfs import CpuMeter
from benchmarks.report import Column, Report, fmt_int, fmt_ms, fmt_pct, fmt_ratio
from scheduler_core.settings import DEFAULT_DELIVERY_THREADS

NAME = "dispatch"
CLIENT_THREADS = 16
WORKER_COUNTS = (1, 2)
DELIVERY_THREADS = DEFAULT_DELIVERY_THREADS  # per worker: 64
PEER_CONCURRENCY = 64
BATCH = 500
# The throttle out of the way: 10,000 starts per 1 s window, per worker.
THROTTLE_OFF = {"selectSize": 10_000, "baseIntervalMs": 1000}
SETTLE_S = 0.5  # after a worker has opened the database, for its loop to be idle
POLL_S = 0.05
READY_TIMEOUT_S = 30.0
STALL_S = 20.0  # no task finished for this long: the case fails
PAYLOAD = {"n": 1}
# The body of every POST, the scheduler's callback envelope (scheduler_core/callback.py).
BODY: dict[str, Any] = {
    "taskId": "00000000-0000-4000-8000-000000000000",
    "executeAt": "2026-01-01T00:00:00Z",
    "attempt": 1,
    "payload": PAYLOAD,
}
SKIPPED_PEER = "skipped: pip install -e '.[bench]' for procrastinate"

COLUMNS = (
    Column("system", "system"),
    Column("backend", "backend"),
    Column("workers", "procs", numeric=True),
    Column("concurrency", "threads", numeric=True),
    Column("tasks", "tasks", fmt_int, numeric=True),
    Column("posts", "posts", fmt_int, numeric=True),
    Column("seconds", "seconds", lambda v: "" if v is None else f"{v:.2f}", numeric=True),
    Column("rate", "tasks/s", fmt_int, numeric=True),
    Column("vs_requests", "vs requests", fmt_ratio, numeric=True),
    Column("vs_one", "vs 1 worker", fmt_ratio, numeric=True),
    Column("vs_peer", "vs peer", fmt_ratio, numeric=True),
    Column("per_claim", "tasks/claim", fmt_ratio, numeric=True),
    Column("per_write", "tasks/write", fmt_ratio, numeric=True),
    Column("cpu_ms", "cpu ms/task", fmt_ms, numeric=True),
    Column("cpu_pct", "%cpu", fmt_pct, numeric=True),
    Column("receiver_cpu_pct", "receiver %cpu", fmt_pct, numeric=True),
    Column("postgres_cpu_pct", "postgres %cpu", fmt_pct, numeric=True),
    Column("note", "note"),
)

DEFINITIONS = {
    "procs / threads": "processes POSTing, and threads (procrastinate: job slots) in each",
    "posts": "POSTs the receiver counted during the case (requests: the timed ones)",
    "seconds": "requests: first timed POST to last answer; scheduler: first attempt's "
    "started_at to last resolved_at; procrastinate: first `started` to last `succeeded` "
    "event (both on the database clock)",
    "tasks/s": "tasks (posts, jobs) / seconds",
    "vs requests": "tasks/s / the requests row's posts/s",
    "vs 1 worker": "2 workers' tasks/s / 1 worker's, same backend",
    "vs peer": "tasks/s / procrastinate's jobs/s (PostgreSQL rows only; the issue's target "
    "is >= 2 for 1 worker)",
    "tasks/claim": "tasks / claim transactions, counted as distinct attempt started_at "
    "(procrastinate: distinct `started` event times); both clocks are read once per "
    "transaction (SQLite's to the millisecond, so two claims in one ms count as one)",
    "tasks/write": "tasks / outcome transactions, counted as distinct resolved_at "
    "(procrastinate: distinct `succeeded` event times)",
    "cpu ms/task": "utime+stime (/proc/<pid>/stat) of the POSTing process(es), from just "
    "before the tasks were due (requests: the timed POSTs began; procrastinate: its "
    "worker printed READY) to the poll that saw the last one done, / tasks",
    "%cpu": "that CPU / seconds, per process, '+' between workers (100 = one core of two)",
    "receiver %cpu / postgres %cpu": "the same for the receiver, and for this database's "
    "backends, the server's background processes and the postmaster",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_argument(parser)
    parser.add_argument(
        "--tasks", type=int, default=None, help="per case (default 10,000; 2,000 with --quick)"
    )


# -- the baseline: requests' own rate --------------------------------------------------


def requests_row(receiver: Server, tasks: int) -> dict[str, Any]:
    key = {"system": "requests", "backend": "-", "workers": 1, "concurrency": CLIENT_THREADS}
    progress(NAME, f"requests: {tasks:,} POSTs from {CLIENT_THREADS} threads")
    me = os.getpid()
    meter = CpuMeter(lambda: [me, receiver.pid])
    try:
        result = post_load(
            f"{receiver.base_url}/hook",
            json_bytes(BODY),
            CLIENT_THREADS,
            expect=200,
            requests_total=tasks,
            window=meter,
        )
    except Exception as exc:
        return {**key, "tasks": tasks, "note": failed_note(exc)}
    cpu_s = meter.seconds([me])
    row = {
        **key,
        "tasks": tasks,
        "posts": result.ok,
        "seconds": result.elapsed_s,
        "rate": result.rate,
        "cpu_ms": cpu_s * 1000 / result.ok if cpu_s is not None and result.ok else None,
        "cpu_pct": meter.percent([me]),
        "receiver_cpu_pct": meter.percent([receiver.pid]),
        "note": "ok",
    }
    if result.errors or result.ok != tasks:
        first = f", first: {result.first_error}" if result.first_error else ""
        row["note"] = failed_note(f"{result.ok} of {tasks} answered 200{first}")
    return row


# -- the scheduler: 1 and 2 workers ----------------------------------------------------


def enqueue_future(api_url: str, hook_url: str, tasks: int) -> None:
    """POST `tasks` tasks due in 2099 to the API, BATCH per array."""
    task = {"webhookUrl": hook_url, "executeAt": FAR_FUTURE, "payload": PAYLOAD}
    headers = {"Content-Type": "application/json"}
    with requests.Session() as session:
        for start in range(0, tasks, BATCH):
            count = min(BATCH, tasks - start)
            answer = session.post(
                f"{api_url}/api/v1/tasks",
                data=json_bytes([task] * count),
                headers=headers,
                timeout=60,
            )
            if answer.status_code != 201:
                raise ClusterError(f"enqueue answered {answer.status_code}: {answer.text[:200]}")


def wait_workers_open(cluster: SchedulerCluster, db: Database) -> None:
    """Until every worker has the database open (PostgreSQL: a TCP connection to its port;
    SQLite: the file among its open files), then SETTLE_S for its loop to start and idle.
    (The store names every connection "scheduler-core", so application_name cannot tell
    the workers apart.)"""
    deadline = time.monotonic() + READY_TIMEOUT_S
    path = sqlite_file(db.url) if db.backend == "sqlite" else ""
    port = (urlsplit(db.url).port or 5432) if db.backend == "postgresql" else 0

    def is_open(pid: int) -> bool:
        return has_tcp_connection(pid, port) if port else has_file_open(pid, path)

    while True:
        reason = cluster.died()
        if reason:
            raise ClusterError(reason)
        waiting = [w.name for w in cluster.workers if not is_open(w.pid)]
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise ClusterError(f"{', '.join(waiting)} did not open the database in 30s")
        time.sleep(0.05)
    time.sleep(SETTLE_S)


def has_tcp_connection(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to `port`
    (/proc/<pid>/fd's socket inodes, looked up in /proc/<pid>/net/tcp and tcp6)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # sl local rem st ... uid timeout inode
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                return True
    return False


def analyze(db: Database) -> None:
    """PostgreSQL: the VACUUM ANALYZE autovacuum would soon run on the freshly filled
    table, as the claim benchmark does. Without statistics the planner claims through a
    bitmap scan and a sort of every due row rather than the due index. SQLite: nothing
    (the scheduler never analyzes it)."""
    if db.backend == "postgresql":
        db.execute("VACUUM ANALYZE scheduler_tasks")


def make_due(db: Database) -> None:
    now = "now()" if db.backend == "postgresql" else SQLITE_NOW_US
    db.execute(
        f"UPDATE scheduler_tasks SET execute_at = {now}, next_attempt_at = {now}"
        " WHERE status = 'pending'"
    )


class PostCount:
    """The fast receiver's POSTs since this object was made, read on one keep-alive
    connection (polled during a case, so it costs next to nothing)."""

    def __init__(self, receiver: Server) -> None:
        self._url = f"{receiver.base_url}/count"
        self._session = requests.Session()
        self._before = 0
        self._before = self()

    def __call__(self) -> int:
        answer = self._session.get(self._url, timeout=10)
        answer.raise_for_status()
        return int(answer.json()["posts"]) - self._before

    def close(self) -> None:
        self._session.close()


def wait_done(
    posted: Callable[[], int],
    count_done: Callable[[], tuple[int, int]],
    tasks: int,
    died: Callable[[], str | None],
) -> str | None:
    """Poll the receiver until `tasks` POSTs arrived (no load on the database meanwhile),
    then `count_done()` -> (finished well, finished badly) until all `tasks` finished;
    return why they did not, or None."""
    problem = poll_until(posted, tasks, died, "POSTs arrived")
    if problem:
        return problem
    bad = 0

    def finished() -> int:
        nonlocal bad
        good, bad = count_done()
        return good + bad

    problem = poll_until(finished, tasks, died, "finished")
    return problem or (f"{bad} of {tasks} did not succeed" if bad else None)


def poll_until(
    value: Callable[[], int], target: int, died: Callable[[], str | None], what: str
) -> str | None:
    """Every POLL_S until `value()` reaches `target`; the reason if a process died or the
    value did not move for STALL_S."""
    last, last_change = -1, time.monotonic()
    while True:
        current = value()
        if current >= target:
            return None
        reason = died()
        if reason:
            return reason
        now = time.monotonic()
        if current != last:
            last, last_change = current, now
        elif now - last_change > STALL_S:
            return f"{current} of {target} {what}, none more in {STALL_S:.0f}s"
        time.sleep(POLL_S)


def scheduler_counts(db: Database) -> tuple[int, int]:
    rows = db.rows(
        "SELECT status, count(*) FROM scheduler_tasks"
        " WHERE status IN ('resolved', 'stale', 'cancelled') GROUP BY status"
    )
    counts = {str(status): int(n) for status, n in rows}
    return counts.get("resolved", 0), counts.get("stale", 0) + counts.get("cancelled", 0)


def scheduler_span_s(db: Database) -> float | None:
    if db.backend == "postgresql":
        value = db.scalar(
            "SELECT extract(epoch FROM (SELECT max(resolved_at) FROM scheduler_tasks)"
            " - (SELECT min(started_at) FROM scheduler_attempts))"
        )
        return None if value is None else float(value)
    value = db.scalar(
        "SELECT (SELECT max(resolved_at) FROM scheduler_tasks)"
        " - (SELECT min(started_at) FROM scheduler_attempts)"
    )
    return None if value is None else int(value) / 1_000_000


def scheduler_row(
    backend: str, workers: int, tasks: int, receiver: Server, logs: Path
) -> dict[str, Any]:
    label = f"dispatch-{backend}-{workers}w"
    progress(NAME, f"scheduler, {backend}, {workers} worker(s): {tasks:,} tasks")
    with database(backend) as db_url:
        cluster = SchedulerCluster("api", db_url, logs, label)
        db: Database | None = None
        posted: PostCount | None = None
        try:
            cluster.start()
            for _ in range(workers):
                cluster.add_worker()  # they start while the tasks are enqueued
            patch_config(cluster.api_url, THROTTLE_OFF)
            enqueue_future(cluster.api_url, f"{receiver.base_url}/hook", tasks)
            db = Database(db_url)
            stored = int(db.scalar("SELECT count(*) FROM scheduler_tasks"))
            if stored != tasks:
                raise ClusterError(f"{stored} tasks stored, {tasks} enqueued")
            analyze(db)
            wait_workers_open(cluster, db)
            pids = [w.pid for w in cluster.workers]
            pg = db
            meter = CpuMeter(lambda: [*pids, receiver.pid, *pg.postgres_pids()])
            posted = PostCount(receiver)
            meter.start()
            make_due(db)
            problem = wait_done(posted, lambda: scheduler_counts(pg), tasks, cluster.died)
            meter.stop()
            posts = posted()
            span = scheduler_span_s(db)
            attempts = int(db.scalar("SELECT count(*) FROM scheduler_attempts"))
            claims = int(db.scalar("SELECT count(DISTINCT started_at) FROM scheduler_attempts"))
            writes = int(db.scalar("SELECT count(DISTINCT resolved_at) FROM scheduler_tasks"))
            pg_pids = db.postgres_pids()
        finally:
            if posted is not None:
                posted.close()
            if db is not None:
                db.close()
            stop_problems = cluster.stop()
    row = measured_row(tasks, posts, span, meter, pids, receiver.pid, pg_pids)
    row |= {"per_claim": tasks / claims if claims else None}
    row |= {"per_write": tasks / writes if writes else None}
    if problem is None and attempts != tasks:
        problem = f"{attempts} attempts for {tasks} tasks"
    problem = problem or "; ".join(stop_problems) or None
    if problem:
        row["note"] = failed_note(problem)
    return row


def measured_row(
    tasks: int,
    posts: int,
    span: float | None,
    meter: CpuMeter,
    pids: list[int],
    receiver_pid: int,
    pg_pids: list[int],
) -> dict[str, Any]:
    """The figures of a scheduler or peer case; note "ok" unless the posts do not match."""

    def pct(some: list[int]) -> float | None:
        used = meter.seconds(some)
        return 100.0 * used / span if used is not None and span else None

    cpu_s = meter.seconds(pids)
    row: dict[str, Any] = {
        "tasks": tasks,
        "posts": posts,
        "seconds": span,
        "rate": tasks / span if span else None,
        "cpu_ms": cpu_s * 1000 / tasks if cpu_s is not None else None,
        "cpu_pct": [pct([pid]) for pid in pids] if len(pids) > 1 else pct(pids),
        "receiver_cpu_pct": pct([receiver_pid]),
        "postgres_cpu_pct": pct(pg_pids) if pg_pids else None,
        "note": "ok",
    }
    if posts != tasks:
        row["note"] = failed_note(f"the receiver counted {posts} POSTs for {tasks} tasks")
    return row


# -- the peer queue --------------------------------------------------------------------


def peer_counts(db: Database) -> tuple[int, int]:
    rows = db.rows(
        "SELECT status::text, count(*) FROM procrastinate_jobs"
        " WHERE status NOT IN ('todo', 'doing') GROUP BY status"
    )
    counts = {str(status): int(n) for status, n in rows}
    good = counts.pop("succeeded", 0)
    return good, sum(counts.values())


def peer_row(tasks: int, receiver: Server, logs: Path) -> dict[str, Any]:
    key = {
        "system": "procrastinate",
        "backend": "postgresql",
        "workers": 1,
        "concurrency": PEER_CONCURRENCY,
    }
    try:
        from benchmarks import peer
    except ImportError as exc:  # procrastinate (or its psycopg 3) is not installed
        return {**key, "note": f"{SKIPPED_PEER}: {exc}"}

    progress(NAME, f"procrastinate, concurrency {PEER_CONCURRENCY}: {tasks:,} jobs")
    with database("postgresql") as db_url:
        job = {"url": f"{receiver.base_url}/hook", "body": BODY}
        peer.prepare(db_url, [job] * tasks)
        db = Database(db_url)
        child: ChildProcess | None = None
        posted: PostCount | None = None
        try:
            posted = PostCount(receiver)
            argv = [sys.executable, "-m", "benchmarks.peer", "--database-url", db_url]
            argv += ["--concurrency", str(PEER_CONCURRENCY)]
            child = ChildProcess(f"{NAME}-peer", argv, logs, python_env(), subprocess.PIPE)
            pids = [child.pid]
            meter = CpuMeter(lambda: [*pids, receiver.pid, *db.postgres_pids()])
            ready = read_line(child, READY_TIMEOUT_S)
            meter.start()  # the worker fetches its first job right after READY
            if ready != "READY":
                raise ClusterError(f"the peer printed {ready!r}, not READY")
            problem = wait_done(posted, lambda: peer_counts(db), tasks, child.died)
            meter.stop()
            posts = posted()
            value = db.scalar(
                "SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')"
                " - min(at) FILTER (WHERE type = 'started')) FROM procrastinate_events"
            )
            span = None if value is None else float(value)
            claims, writes = db.rows(
                "SELECT count(DISTINCT at) FILTER (WHERE type = 'started'),"
                " count(DISTINCT at) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
            )[0]
            pg_pids = db.postgres_pids()
        finally:
            if posted is not None:
                posted.close()
            db.close()
            code = child.stop() if child is not None else 0
    row = {**key, **measured_row(tasks, posts, span, meter, pids, receiver.pid, pg_pids)}
    row |= {"per_claim": tasks / claims if claims else None}
    row |= {"per_write": tasks / writes if writes else None}
    problem = problem or (f"the peer exited with code {code} on SIGTERM" if code else None)
    if problem:
        row["note"] = failed_note(problem)
    return row


# -- the whole benchmark ---------------------------------------------------------------


def run(args: argparse.Namespace) -> Report:
    tasks = args.tasks if args.tasks is not None else (2_000 if args.quick else 10_000)
    if tasks < 1:
        raise ValueError("--tasks must be at least 1")
    backends = backends_from(args.backend)
    report = Report(NAME, COLUMNS)
    report.meta["settings"] = {
        "tasks": tasks,
        "client_threads": CLIENT_THREADS,
        "delivery_threads": DELIVERY_THREADS,
        "peer_concurrency": PEER_CONCURRENCY,
        "select_size": THROTTLE_OFF["selectSize"],
        "base_interval_ms": THROTTLE_OFF["baseIntervalMs"],
        "backends": ",".join(backends),
    }
    with log_folder(report) as logs:
        receiver = Server(f"{NAME}-receiver", "benchmarks.fast_receiver", logs)
        try:
            report.rows.append(requests_row(receiver, tasks))
            for backend in backends:
                for workers in WORKER_COUNTS:
                    key = {
                        "system": "scheduler",
                        "backend": backend,
                        "workers": workers,
                        "concurrency": DELIVERY_THREADS,
                    }
                    try:
                        row = scheduler_row(backend, workers, tasks, receiver, logs)
                    except Exception as exc:
                        row = {"tasks": tasks, "note": failed_note(exc)}
                    report.rows.append({**key, **row})
            if "postgresql" in backends:
                try:
                    report.rows.append(peer_row(tasks, receiver, logs))
                except Exception as exc:
                    report.rows.append(
                        {"system": "procrastinate", "backend": "postgresql", "tasks": tasks}
                        | {"note": failed_note(exc)}
                    )
        finally:
            receiver.stop()
    add_ratios(report.rows)
    target = [r for r in report.rows if r["system"] == "scheduler" and r.get("workers") == 1]
    for row in target:
        if row.get("vs_peer") is not None:
            verdict = "met" if row["vs_peer"] >= 2 else "NOT met"
            report.notes.append(
                f"issue target, 1 worker >= 2x procrastinate on PostgreSQL: "
                f"{row['vs_peer']:.2f}x, {verdict}"
            )
    report.meta["definitions"] = DEFINITIONS
    return report


def add_ratios(rows: list[dict[str, Any]]) -> None:
    def rate_of(system: str, backend: str | None = None, workers: int | None = None) -> Any:
        for row in rows:
            if (
                row["system"] == system
                and backend in (None, row["backend"])
                and workers in (None, row.get("workers"))
                and row.get("note") == "ok"
            ):
                return row.get("rate")
        return None

    baseline = rate_of("requests")
    peer = rate_of("procrastinate")
    for row in rows:
        rate = row.get("rate")
        if rate is None or row["system"] == "requests":
            continue
        if baseline:
            row["vs_requests"] = rate / baseline
        if row["system"] != "scheduler":
            continue
        one = rate_of("scheduler", row["backend"], 1)
        if row.get("workers", 1) > 1 and one:
            row["vs_one"] = rate / one
        if row["backend"] == "postgresql" and peer:
            row["vs_peer"] = rate / peer
