"""`python -m benchmarks [NAME] [options]`: run one benchmark, or all of them with no NAME.

A benchmark is a `Benchmark` in BENCHMARKS: a name, a one-line help, a function adding its
own options to its subcommand's parser, and a function running it that returns a `Report`.
Every subcommand also takes --quick and --json; the shared printer writes the header and
one aligned table per benchmark (or one JSON document) on stdout. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from benchmarks import batch, claim, dispatch, enqueue, lateness
from benchmarks.cluster import ChildProcess, ProcessRecord
from benchmarks.common import failed_note, progress
from benchmarks.report import (
    Column,
    Report,
    Table,
    fmt_mib,
    format_json,
    format_text,
    row_failed,
    run_metadata,
)


@dataclass(frozen=True)
class Benchmark:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Report]


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "lateness",
            "callback lateness at light load, per backend, topology and base_interval_ms",
            lateness.add_arguments,
            lateness.run,
        ),
        Benchmark(
            "enqueue",
            "single-task enqueue over HTTP from 8 and 32 threads, against a no-op endpoint",
            enqueue.add_arguments,
            enqueue.run,
        ),
        Benchmark(
            "batch",
            "arrays of 500 tasks over HTTP, against a raw multi-row INSERT of the same rows",
            batch.add_arguments,
            batch.run,
        ),
        Benchmark(
            "dispatch",
            "due to resolved with 1 and 2 workers, against requests' own rate and a peer queue",
            dispatch.add_arguments,
            dispatch.run,
        ),
        Benchmark(
            "claim",
            "the store's claim of 100 due tasks with 10^4 and 10^6 pending rows",
            claim.add_arguments,
            claim.run,
        ),
    )
}

PROCESS_COLUMNS = (
    Column("name", "process"),
    Column("pid", "pid", numeric=True),
    Column("peak_rss_kb", "peak RSS MiB", fmt_mib, numeric=True),
    Column("exit_code", "exit"),
)


def add_common(parser: argparse.ArgumentParser, dest_prefix: str = "") -> None:
    parser.add_argument(
        "--quick",
        dest=f"{dest_prefix}quick",
        action="store_true",
        help="a short run (well under 2 minutes per benchmark)",
    )
    parser.add_argument(
        "--json",
        dest=f"{dest_prefix}json",
        action="store_true",
        help="print one JSON document instead of tables",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks for scheduler-core, on real processes. With no benchmark "
        "named, every one runs with its defaults.",
    )
    # Distinct names here: a subparser's defaults would overwrite same-named values.
    add_common(parser, dest_prefix="all_")
    sub = parser.add_subparsers(dest="benchmark", title="benchmarks", metavar="BENCHMARK")
    for bench in BENCHMARKS.values():
        child = sub.add_parser(bench.name, help=bench.help, description=bench.help)
        add_common(child)
        bench.add_arguments(child)
    return parser


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so every `finally` stops its processes


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.benchmark is None:
        common = (["--quick"] if args.all_quick else []) + (["--json"] if args.all_json else [])
        runs = [parser.parse_args([name, *common]) for name in BENCHMARKS]
    else:
        args.quick = args.quick or args.all_quick
        args.json = args.json or args.all_json
        runs = [args]
    meta = run_metadata()
    reports = [run_one(run) for run in runs]
    as_json = runs[0].json
    sys.stdout.write(format_json(meta, reports) if as_json else format_text(meta, reports))
    # A case that failed (a process died, callbacks missing) makes the run fail.
    return int(any(row_failed(row) for r in reports for row in r.rows))


def run_one(args: argparse.Namespace) -> Report:
    """One benchmark, with the peak memory of every process it started; a benchmark that
    raised is one failed row, and the next one runs."""
    mark = len(ChildProcess.history)
    try:
        report = BENCHMARKS[args.benchmark].run(args)
    except Exception as exc:
        progress(args.benchmark, f"crashed: {exc!r}")
        report = Report(args.benchmark, (Column("note", "note"),), [{"note": failed_note(exc)}])
    report.tables.append(process_table(ChildProcess.history[mark:]))
    return report


def process_table(records: list[ProcessRecord]) -> Table:
    rows = [
        {"name": r.name, "pid": r.pid, "peak_rss_kb": r.peak_rss_kb, "exit_code": r.exit_code}
        for r in records
    ]
    return Table("processes started (VmHWM just before each was stopped)", PROCESS_COLUMNS, rows)


if __name__ == "__main__":
    sys.exit(main())
