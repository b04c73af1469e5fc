"""python -m tests.soak: the soak (default) or the throughput figures (--throughput)."""

from __future__ import annotations

import argparse
import sys

from tests.soak.soak import (
    MAX_LATE_RSS_GROWTH_MB,
    MAX_RSS_GROWTH_MB,
    SOAK_CONFIG,
    run_soak,
)
from tests.soak.throughput import run_throughput, throughput_table

DESCRIPTION = f"""\
Soak: start one `scheduler serve` (API + dispatcher) and --workers `scheduler worker`
processes on a fresh database (PostgreSQL: a throwaway database on
SCHEDULER_TEST_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres, dropped
afterwards; SQLite: a file in a temporary folder), and a receiver in its own process that
answers 500 to a seeded random --fail-rate of calls and 200 to the rest. Enqueue --tasks
in arrays of 1000 (1 in 10 with maxRetries=0, 2 in 10 with maxRetries=1, the rest with
the config's max_retries), wait until none is pending or running, then check every task:
resolved or stale; attempts = the calls the receiver saw for it, numbered 1..n once
each; a resolved task's last call got 200 and the others 500; a stale task got 500 on
all its max_retries+1 calls; no call after its outcome was recorded; the attempt history
agrees with the receiver. Each scheduler process's RSS (/proc/<pid>/status VmRSS) is
sampled once 5% of the tasks have resolved (start), at 50% (mid) and at the end: growth
from start to end over --max-rss-growth-mb (default {MAX_RSS_GROWTH_MB:.0f} MB), or over the
second half beyond --max-late-rss-growth-mb (default {MAX_LATE_RSS_GROWTH_MB:.0f} MB: a leak
goes on growing, the allocator's warm-up levels off), fails the run. Every process must
exit 0 on SIGTERM and log no traceback, failed tick or database error.
Runtime config: {", ".join(f"{k}={v}" for k, v in SOAK_CONFIG.items())}.

Throughput (--throughput): on PostgreSQL, for each of --throughput-workers, a fresh
database, `scheduler serve --no-dispatcher` and W workers deliver --throughput-tasks due
tasks to a receiver answering 200; prints delivered/s, the ratio to 1 worker, and the CPU
used by the receiver, the workers and PostgreSQL over the same window.

Exit code: 0 when every check passes, 1 otherwise. Everything runs on 127.0.0.1."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--tasks", type=int, default=100_000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="default: %(default)s")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for every task to finish (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    parser.add_argument("--fail-rate", type=float, default=0.1, help="default: %(default)s")
    parser.add_argument(
        "--max-rss-growth-mb", type=float, default=MAX_RSS_GROWTH_MB, help="default: %(default)s"
    )
    parser.add_argument(
        "--max-late-rss-growth-mb",
        type=float,
        default=MAX_LATE_RSS_GROWTH_MB,
        help="default: %(default)s",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the scheduler logs (kept on failure)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--throughput", action="store_true", help="measure throughput instead of soaking"
    )
    parser.add_argument("--throughput-tasks", type=int, default=20_000, help="default: %(default)s")
    parser.add_argument(
        "--throughput-workers",
        default="1,2,4",
        help="comma-separated worker counts, the first is the baseline (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    if args.throughput:
        counts = tuple(int(n) for n in args.throughput_workers.split(","))
        rows = run_throughput(args.throughput_tasks, counts, args.timeout, not args.quiet)
        print(throughput_table(rows))
        return 0
    result = run_soak(
        backend=args.backend,
        tasks=args.tasks,
        workers=args.workers,
        timeout=args.timeout,
        seed=args.seed,
        fail_rate=args.fail_rate,
        max_rss_growth_mb=args.max_rss_growth_mb,
        max_late_rss_growth_mb=args.max_late_rss_growth_mb,
        progress=not args.quiet,
        keep_logs=args.keep_logs,
    )
    print(result.table())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
