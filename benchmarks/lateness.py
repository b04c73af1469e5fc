"""Lateness at light load: when a callback reaches the receiver, against when it was due.

Lateness is the receiver's arrival time of a task's first callback (taken as soon as the
request's headers are parsed) minus the task's `nextAttemptAt` for its first attempt: the
`createdAt` of the 201 answer for a task enqueued due now, its `executeAt` for a task due in
2 s. Every case runs real processes: the receiver, `scheduler serve` (topology "serve") or
`scheduler serve --no-dispatcher` plus `scheduler worker` (topology "worker"), on a fresh
PostgreSQL database or SQLite file, at base_interval_ms 1000 and 100.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from benchmarks.cluster import (
    ClusterError,
    Receiver,
    SchedulerCluster,
    postgresql_database,
    postgresql_version,
    sqlite_database,
)
from benchmarks.report import Column, Report, fmt_ms
from benchmarks.stats import paced, summarize_ms

BACKENDS = ("postgresql", "sqlite")
TOPOLOGIES = ("serve", "worker")
BASE_INTERVALS_MS = (1000, 100)
ARRIVAL_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
# Between the two warm-up tasks, so a listener started with the dispatcher is connected.
WARMUP_PAUSE_S = 0.25
POLL_RECEIVER_S = 0.05
# While no callback is expected yet, only check that the processes are alive.
POLL_IDLE_S = 0.25

COLUMNS = (
    Column("backend", "backend"),
    Column("topology", "topology"),
    Column("base_interval_ms", "base ms", numeric=True),
    Column("tasks", "tasks"),
    Column("sent", "sent", numeric=True),
    Column("n", "n", numeric=True),
    Column("missing", "missing", numeric=True),
    Column("min_ms", "min ms", fmt_ms, numeric=True),
    Column("p50_ms", "p50 ms", fmt_ms, numeric=True),
    Column("p99_ms", "p99 ms", fmt_ms, numeric=True),
    Column("max_ms", "max ms", fmt_ms, numeric=True),
    Column("over_50ms", ">50ms", numeric=True),
    Column("note", "note"),
)


@dataclass(frozen=True)
class TaskKind:
    name: str
    delay_s: float  # executeAt = now + delay_s; 0 means no executeAt (due now)


KINDS = (TaskKind("due now", 0.0), TaskKind("due in 2 s", 2.0))

DEFINITIONS = {
    "lateness": "receiver's arrival time of a task's first callback (headers parsed, body not "
    "read) minus its nextAttemptAt for the first attempt, in ms",
    "due now": "no executeAt; due time = createdAt of the 201 answer",
    "due in 2 s": "executeAt = time.time() + 2 s in the benchmark; "
    "due time = executeAt of the 201 answer",
    "loopback floor": "receiver's arrival time minus time.time() just before session.post()",
    "percentiles": "nearest rank over every delivered task of the case",
}


@dataclass(frozen=True)
class Settings:
    rate: float
    seconds: float
    probes: int
    backends: tuple[str, ...]
    quick: bool
    arrival_timeout_s: float = ARRIVAL_TIMEOUT_S

    @property
    def intervals_ms(self) -> tuple[int, ...]:
        """--quick measures the default base_interval_ms only (half the cases)."""
        return BASE_INTERVALS_MS[:1] if self.quick else BASE_INTERVALS_MS

    @property
    def tasks_per_case(self) -> int:
        return max(1, round(self.rate * self.seconds))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("postgresql", "sqlite", "both"),
        default="both",
        help="database backend(s) to measure (default: both)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="tasks per second (default 20)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="how long each case enqueues (default 15; 3 with --quick, which also measures "
        "base_interval_ms 1000 only)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    seconds = args.seconds if args.seconds is not None else (3.0 if quick else 15.0)
    if args.rate <= 0 or seconds <= 0:
        raise SystemExit("--rate and --seconds must be positive")
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    probes = max(1, round(args.rate * 2)) if quick else 200
    return Settings(args.rate, seconds, probes, backends, quick)


def progress(message: str) -> None:
    print(f"[lateness {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def iso_utc(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def epoch_of(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# -- measuring ---------------------------------------------------------------------------


def wait_for_arrivals(
    receiver: Receiver,
    ids: set[str],
    deadline: float,
    cluster: SchedulerCluster | None,
    not_before: float = 0.0,
) -> str | None:
    """Poll the receiver until every id arrived, from `not_before` on (the last due time);
    return why not, when a process died. At the deadline the missing column says the rest."""
    while True:
        now = time.monotonic()
        if now >= not_before:
            receiver.refresh()
            if ids <= receiver.first.keys():
                return None
        reason = cluster.died() if cluster is not None else None
        if reason:
            receiver.refresh()
            return reason
        if now >= deadline:
            receiver.refresh()
            return None
        time.sleep(POLL_RECEIVER_S if now >= not_before else min(POLL_IDLE_S, not_before - now))


def lateness_row(
    receiver: Receiver, dues: dict[str, float], failure: str | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """The statistics of one case, from the due times and the receiver's first arrivals."""
    arrived = {i: receiver.first[i] for i in dues if i in receiver.first}
    lateness = [(arrived[i] - due) * 1000 for i, due in dues.items() if i in arrived]
    duplicates = sum(receiver.count[i] - 1 for i in arrived)
    missing = len(dues) - len(arrived)
    notes = [one_line(failure)] if failure else []
    notes += [one_line(error) for error in extra.pop("errors", [])]
    if missing:
        notes.append(f"{missing} callbacks missing")
    if duplicates:
        notes.append(f"{duplicates} duplicate deliveries")
    return {
        "sent": len(dues),
        **summarize_ms(lateness),
        "missing": missing,
        "duplicates": duplicates,
        "note": "; ".join(notes) or "ok",
        **extra,
    }


def loopback_floor(receiver: Receiver, settings: Settings) -> dict[str, Any]:
    """Time from just before `session.post(...)` in this process to the receiver's arrival,
    over `settings.probes` posts at the benchmark's rate: what loopback HTTP costs here."""
    session = requests.Session()
    token = secrets.token_hex(4)
    sent: dict[str, float] = {}
    errors: list[str] = []
    for i, _lag in paced(settings.probes, settings.rate):
        probe_id = f"probe-{token}-{i}"
        headers = {"X-Scheduler-Task-Id": probe_id, "Content-Type": "application/json"}
        before = time.time()
        try:
            session.post(receiver.hook_url, data=b"{}", headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            errors.append(f"probe failed: {exc}")
            continue
        sent[probe_id] = before
    session.close()
    failure = wait_for_arrivals(receiver, set(sent), time.monotonic() + 10, None)
    row = lateness_row(receiver, sent, failure, {"errors": errors[:1]})
    return {"backend": "-", "topology": "loopback floor", "tasks": "probe POST", **row}


def enqueue(
    session: requests.Session, cluster: SchedulerCluster, body: dict[str, Any]
) -> dict[str, Any]:
    answer = session.post(f"{cluster.api_url}/api/v1/tasks", json=body, timeout=REQUEST_TIMEOUT_S)
    if answer.status_code != 201:
        raise ClusterError(f"enqueue answered HTTP {answer.status_code}: {answer.text[:200]}")
    task: dict[str, Any] = answer.json()
    return task


def run_case(
    cluster: SchedulerCluster, receiver: Receiver, kind: TaskKind, settings: Settings
) -> dict[str, Any]:
    """Enqueue at the rate for the duration, wait for every callback, summarize."""
    session = requests.Session()
    dues: dict[str, float] = {}
    errors: list[str] = []
    enqueue_ms: list[float] = []
    max_lag_s = 0.0
    differs = 0
    failure = None
    for _i, lag_s in paced(settings.tasks_per_case, settings.rate):
        max_lag_s = max(max_lag_s, lag_s)
        body: dict[str, Any] = {"webhookUrl": receiver.hook_url}
        if kind.delay_s:
            body["executeAt"] = iso_utc(time.time() + kind.delay_s)
        started = time.perf_counter()
        try:
            task = enqueue(session, cluster, body)
        except (requests.RequestException, ClusterError, ValueError) as exc:
            errors.append(str(exc))
            failure = cluster.died()
            if failure:
                break
            continue
        enqueue_ms.append((time.perf_counter() - started) * 1000)
        due = task["executeAt"] if kind.delay_s else task["createdAt"]
        differs += task["nextAttemptAt"] != due
        dues[task["id"]] = epoch_of(due)
    session.close()
    if failure is None:
        last_due = time.monotonic() + kind.delay_s
        deadline = last_due + settings.arrival_timeout_s
        failure = wait_for_arrivals(receiver, set(dues), deadline, cluster, last_due)
    problems = [f"{len(errors)} enqueue errors, first: {errors[0]}"] if errors else []
    if differs:
        problems.append(f"{differs} tasks answered with nextAttemptAt != their due time")
    extra: dict[str, Any] = {
        "errors": problems,
        "enqueue_ms": summarize_ms(enqueue_ms),
        "pace_lag_max_ms": max_lag_s * 1000,
        "next_attempt_differs": differs,
    }
    return lateness_row(receiver, dues, failure, extra)


# -- setting a case up -----------------------------------------------------------------


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    manager = postgresql_database() if backend == "postgresql" else sqlite_database()
    with manager as url:
        yield url


def set_base_interval(cluster: SchedulerCluster, interval_ms: int) -> None:
    answer = requests.patch(
        f"{cluster.api_url}/api/v1/config",
        json={"baseIntervalMs": interval_ms},
        timeout=REQUEST_TIMEOUT_S,
    )
    if answer.status_code != 200 or answer.json().get("baseIntervalMs") != interval_ms:
        raise ClusterError(f"PATCH /api/v1/config answered {answer.status_code}: {answer.text}")


def warm_up(cluster: SchedulerCluster, receiver: Receiver) -> list[float]:
    """Deliver two tasks, one after the other: the dispatcher (the worker's, in topology
    "worker") is up, and it woke up after the config change, so it applied it (the config
    is read at every wake-up). Returns their lateness in ms; they belong to no case."""
    lateness = []
    with requests.Session() as session:
        for i in range(2):
            if i:
                time.sleep(WARMUP_PAUSE_S)
            task = enqueue(session, cluster, {"webhookUrl": receiver.hook_url})
            deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
            failure = wait_for_arrivals(receiver, {task["id"]}, deadline, cluster)
            if task["id"] not in receiver.first:
                raise ClusterError(failure or "a warm-up callback did not arrive in 30s")
            lateness.append((receiver.first[task["id"]] - epoch_of(task["createdAt"])) * 1000)
    return lateness


def failed_row(reason: str) -> dict[str, Any]:
    empty = summarize_ms([]) | {"over_50ms": None}
    return {"sent": 0, **empty, "missing": None, "note": f"FAILED: {one_line(reason)}"}


def one_line(text: str) -> str:
    return " ".join(text.split())


def guarded_case(
    cluster: SchedulerCluster, receiver: Receiver, kind: TaskKind, settings: Settings
) -> dict[str, Any]:
    """run_case, or a failed row saying why it could not run or finish."""
    reason = cluster.died()
    if reason:
        return failed_row(reason)
    try:
        return run_case(cluster, receiver, kind, settings)
    except Exception as exc:  # one broken case must not stop the others
        return failed_row(f"{type(exc).__name__}: {exc}")


def run_group(
    backend: str,
    topology: str,
    interval_ms: int,
    receiver: Receiver,
    settings: Settings,
    log_dir: Path,
) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Both task kinds on fresh processes and a fresh database: rows, notes, warm-up facts."""
    label = f"{backend}-{topology}-{interval_ms}"
    key = {"backend": backend, "topology": topology, "base_interval_ms": interval_ms}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    warm: dict[str, Any] = {}
    began = time.monotonic()
    try:
        with database(backend) as url:
            cluster = SchedulerCluster(topology, url, log_dir, label)
            try:
                cluster.start()
                set_base_interval(cluster, interval_ms)
                warm["warmup_lateness_ms"] = warm_up(cluster, receiver)
                progress(f"{label}: ready in {time.monotonic() - began:.1f}s")
                for kind in KINDS:
                    progress(f"{label}: {kind.name}")
                    row = guarded_case(cluster, receiver, kind, settings)
                    rows.append({**key, "tasks": kind.name, **row})
            finally:
                stopping = time.monotonic()
                notes += [f"{label}: {p}" for p in cluster.stop()]
                progress(f"{label}: stopped in {time.monotonic() - stopping:.1f}s")
    except Exception as exc:  # report it in the rows, go on with the next group
        progress(f"{label}: failed: {one_line(str(exc))}")
        done = {row["tasks"] for row in rows}
        rows += [
            {**key, "tasks": k.name, **failed_row(str(exc))} for k in KINDS if k.name not in done
        ]
    return rows, notes, warm


def run(args: argparse.Namespace) -> Report:
    settings = settings_from(args)
    report = Report("lateness", COLUMNS)
    report.meta["settings"] = {
        "rate": settings.rate,
        "seconds": settings.seconds,
        "tasks_per_case": settings.tasks_per_case,
        "floor_probes": settings.probes,
        "base_intervals_ms": "/".join(map(str, settings.intervals_ms)),
        "backends": ",".join(settings.backends),
    }
    report.meta["postgresql"] = postgresql_version() if "postgresql" in settings.backends else None
    report.meta["sqlite"] = sqlite3.sqlite_version
    log_dir = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
    report.meta["log_dir"] = str(log_dir)
    receiver = Receiver(log_dir)
    try:
        progress(f"loopback floor: {settings.probes} posts at {settings.rate:g}/s")
        report.rows.append(loopback_floor(receiver, settings))
        report.meta["warmup"] = {}
        for backend in settings.backends:
            for topology in TOPOLOGIES:
                for interval_ms in settings.intervals_ms:
                    rows, notes, warm = run_group(
                        backend, topology, interval_ms, receiver, settings, log_dir
                    )
                    report.rows += rows
                    report.notes += notes
                    report.meta["warmup"][f"{backend}-{topology}-{interval_ms}"] = warm
    finally:
        receiver.stop()
        logs = list(log_dir.glob("*.log"))
        failed = any(row["note"] != "ok" for row in report.rows)
        if any(p.stat().st_size for p in logs) or (failed and len(logs) > 1):
            report.notes.append(f"process logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
            report.meta["log_dir"] = None
    report.meta["definitions"] = DEFINITIONS
    return report
