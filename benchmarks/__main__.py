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

from benchmarks import lateness
from benchmarks.report import Report, format_json, format_text, run_metadata


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
    )
}


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
    reports = [BENCHMARKS[run.benchmark].run(run) for run in runs]
    as_json = runs[0].json
    sys.stdout.write(format_json(meta, reports) if as_json else format_text(meta, reports))
    # A case that failed (a process died, callbacks missing) makes the run fail.
    return int(any(row.get("note", "ok") != "ok" for r in reports for row in r.rows))


if __name__ == "__main__":
    sys.exit(main())
