"""The soak: many tasks through one `scheduler serve` and N `scheduler worker` processes on
a fresh database, against a receiver that fails a seeded 10% of calls, then every task
accounted for and every process's memory compared between warm-up and the end.

`run_soak()` does it all and returns a `SoakResult`; `python -m tests.soak` prints it and
tests/soak/test_soak.py asserts it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
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
    rss_kb,
)

BATCH = 1000
# Memory stays flat. RSS is sampled once WARM_UP_SHARE of the tasks have resolved
# ("start"), at MID_SHARE ("mid") and at the end. A scheduler process keeps growing for a
# while after its first ticks without leaking: glibc gives each of up to 8 x cores busy
# threads a malloc arena of its own (with MALLOC_ARENA_MAX=2 a serve process ends ~20 MB
# smaller), and each SQLite connection fills a page cache of up to 2 MB. That warm-up
# levels off (a 40,000-task run ends at the same RSS as a 100,000-task one), while a leak
# goes on growing with the work done. So a run fails when a process grows more than
# MAX_LATE_RSS_GROWTH_MB over the second half of the tasks (measured: at most 7 MB, when a
# backlog first makes every tick claim select_size tasks at once), or more than
# MAX_RSS_GROWTH_MB from start to end (measured: at most 30 MB, SQLite's serve).
WARM_UP_SHARE = 0.05
MID_SHARE = 0.5
MAX_RSS_GROWTH_MB = 50.0
MAX_LATE_RSS_GROWTH_MB = 15.0
# A call's arrival (receiver clock) may only precede its task's final write (database
# clock, same machine); the tolerance absorbs SQLite's millisecond timestamps.
CLOCK_TOLERANCE_S = 0.05
EXAMPLES = 3  # examples shown per kind of failure

SOAK_CONFIG = {
    "base_interval_ms": 10,
    "select_size": 500,
    "retry_backoff_ms": 100,
    "retry_backoff_max_ms": 2000,
    "http_callback_timeout_ms": 5000,
    "max_retries": 5,
}


def max_retries_for(n: int) -> int | None:
    """The per-task override of the n-th task: 1 in 10 gets 0 (a failed first call makes
    it stale), 2 in 10 get 1 (stale after two failures, ~1% of them), the rest use the
    config's max_retries (5: stale almost never)."""
    if n % 10 == 0:
        return 0
    if n % 10 in (1, 2):
        return 1
    return None


@dataclass
class ProcessSample:
    name: str
    pid: int
    rss_start_kb: int | None = None
    rss_mid_kb: int | None = None
    rss_end_kb: int | None = None
    cpu_s: float = 0.0

    @property
    def growth_kb(self) -> int | None:
        if self.rss_start_kb is None or self.rss_end_kb is None:
            return None
        return self.rss_end_kb - self.rss_start_kb

    @property
    def late_growth_kb(self) -> int | None:
        if self.rss_mid_kb is None or self.rss_end_kb is None:
            return None
        return self.rss_end_kb - self.rss_mid_kb


@dataclass
class SoakResult:
    backend: str
    tasks: int
    workers: int
    resolved: int = 0
    stale: int = 0
    calls: int = 0
    failed_calls: int = 0
    enqueue_s: float = 0.0
    duration_s: float = 0.0
    processes: list[ProcessSample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    max_growth_mb: float = MAX_RSS_GROWTH_MB
    max_late_growth_mb: float = MAX_LATE_RSS_GROWTH_MB

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        per_s = self.calls / self.duration_s if self.duration_s else 0.0
        finished_per_s = (self.resolved + self.stale) / self.duration_s if self.duration_s else 0
        lines = [
            f"soak on {self.backend}: 1 server + {self.workers} workers",
            "",
            f"  {'tasks':<22}{self.tasks:>12,}",
            f"  {'resolved':<22}{self.resolved:>12,}",
            f"  {'stale':<22}{self.stale:>12,}",
            f"  {'calls (500 answered)':<22}{self.calls:>12,}  ({self.failed_calls:,})",
            f"  {'enqueue time':<22}{self.enqueue_s:>11.1f}s",
            f"  {'duration':<22}{self.duration_s:>11.1f}s  (first enqueue to last outcome)",
            f"  {'delivered/s':<22}{per_s:>12,.0f}  (calls; {finished_per_s:,.0f} tasks/s)",
            "",
            f"  {'process':<10}{'pid':>8}{'RSS start':>11}{'mid':>10}{'end':>10}{'growth':>11}"
            f"{'2nd half':>11}{'CPU s':>8}",
        ]
        for p in self.processes:
            lines.append(
                f"  {p.name:<10}{p.pid:>8}{_mb(p.rss_start_kb):>11}{_mb(p.rss_mid_kb):>10}"
                f"{_mb(p.rss_end_kb):>10}{_mb(p.growth_kb, signed=True):>11}"
                f"{_mb(p.late_growth_kb, signed=True):>11}{p.cpu_s:>8.1f}"
            )
        lines.append(
            f"  (RSS start/mid: once {WARM_UP_SHARE:.0%}/{MID_SHARE:.0%} of the tasks resolved;"
            f" limits: growth {self.max_growth_mb:.0f} MB, 2nd half {self.max_late_growth_mb:.0f}"
            " MB)"
        )
        lines.append("")
        if self.failures:
            lines.append(f"FAILED: {len(self.failures)} check(s)")
            lines.extend(f"  - {failure}" for failure in self.failures)
            if self.logs:
                lines.append("  process logs kept: " + " ".join(str(p) for p in self.logs))
        else:
            lines.append("PASSED: every task resolved or stale with the right calls")
        return "\n".join(lines)


def _mb(kb: int | None, signed: bool = False) -> str:
    if kb is None:
        return "-"
    return f"{kb / 1024:+.1f} MB" if signed else f"{kb / 1024:.1f} MB"


def run_soak(
    backend: str = "postgresql",
    tasks: int = 100_000,
    workers: int = 2,
    timeout: float = 1800.0,
    seed: int = 1,
    fail_rate: float = 0.1,
    max_rss_growth_mb: float = MAX_RSS_GROWTH_MB,
    max_late_rss_growth_mb: float = MAX_LATE_RSS_GROWTH_MB,
    progress: bool = True,
    keep_logs: bool = False,
) -> SoakResult:
    """Run one soak from a fresh database to a checked result; never raises on a failed
    check (the result lists it), only on a setup error."""
    result = SoakResult(backend, tasks, workers)
    result.max_growth_mb = max_rss_growth_mb
    result.max_late_growth_mb = max_late_rss_growth_mb
    say = _reporter(progress)
    with (
        fresh_database(backend, SOAK_CONFIG) as url,
        tempfile.TemporaryDirectory(prefix="scheduler-soak-") as folder,
    ):
        receiver = ReceiverProcess(seed, fail_rate, Path(folder))
        schedulers = Schedulers(url)
        reader = Reader(url)
        try:
            schedulers.serve()
            schedulers.workers(workers)
            result.processes = [ProcessSample(name, p.proc.pid) for name, p in schedulers.named]
            say(f"{backend}: serve + {workers} workers up; enqueueing {tasks:,} tasks")
            ids = _enqueue_and_drain(result, schedulers, receiver, reader, timeout, say)
            for sample in result.processes:
                sample.rss_end_kb = rss_kb(sample.pid)
                sample.cpu_s = cpu_seconds(sample.pid)
            codes = schedulers.stop_gracefully()
            calls = receiver.calls()  # after the stop: a late call would be seen too
            result.failures += [
                f"{name} exited with {code} on SIGTERM (expected 0)"
                for name, code in codes.items()
                if code != 0
            ]
            result.failures += schedulers.log_problems()[:10]
            result.calls = len(calls)
            result.failed_calls = sum(status != 200 for *_, status in calls)
            if ids is not None:
                say("checking every task against the receiver's calls")
                result.failures += check_tasks(reader, ids, calls)
                result.failures += check_memory(
                    result.processes, max_rss_growth_mb, max_late_rss_growth_mb
                )
        finally:
            reader.close()
            result.logs = schedulers.close(keep_logs=keep_logs or bool(result.failures))
            receiver.stop()
    return result


def _reporter(progress: bool) -> Any:
    started = time.monotonic()

    def say(message: str) -> None:
        if progress:
            print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _enqueue_and_drain(
    result: SoakResult,
    schedulers: Schedulers,
    receiver: ReceiverProcess,
    reader: Reader,
    timeout: float,
    say: Any,
) -> list[str] | None:
    """Enqueue every task in batches, then wait until none is pending or running. Return
    the ids, or None after recording why the run could not finish."""
    assert schedulers.api_url is not None
    started = time.monotonic()
    deadline = started + timeout
    ids: list[str] = []
    last_report = started
    with requests.Session() as session:
        for first in range(0, result.tasks, BATCH):
            bodies = []
            for n in range(first, min(first + BATCH, result.tasks)):
                body: dict[str, Any] = {"webhookUrl": receiver.url(), "payload": {"n": n}}
                if (max_retries := max_retries_for(n)) is not None:
                    body["maxRetries"] = max_retries
                bodies.append(body)
            ids += enqueue(session, schedulers.api_url, bodies)
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                say(f"enqueued {len(ids):,}; {_counts(reader.status_counts())}; {_rss(result)}")
            _sample_rss(result, reader)
    result.enqueue_s = time.monotonic() - started
    say(f"enqueued {len(ids):,} in {result.enqueue_s:.1f}s")
    last_report = 0.0
    while True:
        counts = reader.status_counts()
        _sample_rss(result, reader, counts)
        open_tasks = counts.get("pending", 0) + counts.get("running", 0)
        now = time.monotonic()
        if now - last_report >= 10 or open_tasks == 0:
            last_report = now
            say(f"{_counts(counts)}; calls={receiver.stats()['calls']:,}; {_rss(result)}")
        if open_tasks == 0:
            break
        if dead := schedulers.dead():
            result.failures += [f"a scheduler process died: {d}" for d in dead]
            return None
        if now > deadline:
            result.failures.append(
                f"timed out after {timeout:.0f}s with tasks still open: {_counts(counts)}"
            )
            return None
        time.sleep(0.5)
    result.duration_s = time.monotonic() - started
    result.resolved = counts.get("resolved", 0)
    result.stale = counts.get("stale", 0)
    _sample_rss(result, reader, counts)  # in case the last poll went past both points
    return ids


def _rss(result: SoakResult) -> str:
    return "RSS " + " ".join(f"{p.name}={_mb(rss_kb(p.pid))}" for p in result.processes)


def _counts(counts: dict[str, int]) -> str:
    order = ("pending", "running", "resolved", "stale", "cancelled")
    return " ".join(f"{status}={counts.get(status, 0):,}" for status in order)


def _sample_rss(result: SoakResult, reader: Reader, counts: dict[str, int] | None = None) -> None:
    """Take the start and mid RSS samples once the run has got that far."""
    first = result.processes[0]
    if first.rss_mid_kb is not None:
        return
    counts = counts if counts is not None else reader.status_counts()
    resolved = counts.get("resolved", 0)
    if first.rss_start_kb is None and resolved >= max(1, result.tasks * WARM_UP_SHARE):
        for sample in result.processes:
            sample.rss_start_kb = rss_kb(sample.pid)
    if first.rss_start_kb is not None and resolved >= result.tasks * MID_SHARE:
        for sample in result.processes:
            sample.rss_mid_kb = rss_kb(sample.pid)


def check_tasks(
    reader: Reader, ids: list[str], calls: list[tuple[float, str, int, int]]
) -> list[str]:
    """Every way a task can be wrong, each kind with its count and a few examples."""
    [(config_max_retries,)] = reader.query("SELECT max_retries FROM scheduler_config")
    rows = reader.query(
        "SELECT CAST(id AS TEXT), status, attempts, max_retries, resolved_at, updated_at,"
        " last_status_code FROM scheduler_tasks"
    )
    recorded: dict[str, dict[int, tuple[int | None, bool]]] = defaultdict(dict)
    for task_id, attempt, status_code, finished in reader.query(
        "SELECT CAST(task_id AS TEXT), attempt, status_code, finished_at IS NOT NULL"
        " FROM scheduler_attempts"
    ):
        recorded[task_id][attempt] = (status_code, bool(finished))
    by_task: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for at, task_id, attempt, status in calls:
        by_task[task_id].append((attempt, status, at))

    problems: dict[str, list[str]] = defaultdict(list)
    stored = {row[0]: row for row in rows}
    for task_id in set(ids) - set(stored):
        problems["enqueued but not in the database (lost)"].append(task_id)
    for task_id in set(stored) - set(ids):
        problems["in the database but never enqueued"].append(task_id)
    for task_id in set(by_task) - set(stored):
        problems["called for a task that does not exist"].append(task_id)

    for task_id, status, attempts, max_retries, resolved_at, updated_at, last_code in rows:
        seen = sorted(by_task.get(task_id, []))
        statuses = [s for _, s, _ in seen]
        where = f"{task_id} ({status}, attempts={attempts}, calls={statuses})"
        if status not in ("resolved", "stale"):
            problems["neither resolved nor stale"].append(where)
            continue
        if len(seen) != attempts:
            problems["attempts differs from the calls the receiver saw"].append(where)
        if [a for a, _, _ in seen] != list(range(1, len(seen) + 1)):
            problems["attempt numbers not 1..n, each once (delivered twice?)"].append(where)
        finished_at = reader.time(resolved_at if status == "resolved" else updated_at)
        assert finished_at is not None
        if seen and seen[-1][2] > finished_at.timestamp() + CLOCK_TOLERANCE_S:
            problems["called after its outcome was recorded"].append(where)
        if status == "resolved":
            if statuses[-1:] != [200] or any(s != 500 for s in statuses[:-1]):
                problems["resolved, but not 500s then one last 200"].append(where)
            if last_code != 200:
                problems["resolved with lastStatusCode other than 200"].append(where)
        else:
            budget = (max_retries if max_retries is not None else config_max_retries) + 1
            if len(seen) != budget or any(s != 500 for s in statuses):
                problems[f"stale, but not {budget} calls all answered 500"].append(where)
        history = recorded.get(task_id, {})
        answered = {a: s for a, s, _ in seen}
        if sorted(history) != list(range(1, attempts + 1)):
            problems["attempt history is not 1..attempts"].append(where)
        elif any(
            code != answered.get(a) or not finished for a, (code, finished) in history.items()
        ):
            problems["attempt history disagrees with the receiver"].append(
                f"{where} history={history}"
            )

    return [
        f"{len(examples):,} task(s) {kind}: e.g. " + "; ".join(examples[:EXAMPLES])
        for kind, examples in problems.items()
    ]


def check_memory(
    processes: list[ProcessSample], max_growth_mb: float, max_late_growth_mb: float
) -> list[str]:
    failures = []
    for p in processes:
        if p.growth_kb is None or p.late_growth_kb is None:
            failures.append(f"{p.name}: RSS could not be sampled (process gone?)")
            continue
        if p.growth_kb / 1024 > max_growth_mb:
            failures.append(
                f"{p.name}: RSS grew {p.growth_kb / 1024:.1f} MB from start to end"
                f" ({_mb(p.rss_start_kb)} -> {_mb(p.rss_end_kb)}), more than {max_growth_mb} MB"
            )
        if p.late_growth_kb / 1024 > max_late_growth_mb:
            failures.append(
                f"{p.name}: RSS grew {p.late_growth_kb / 1024:.1f} MB over the second half"
                f" ({_mb(p.rss_mid_kb)} -> {_mb(p.rss_end_kb)}), more than"
                f" {max_late_growth_mb} MB: still growing after warm-up"
            )
    return failures
