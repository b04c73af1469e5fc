"""What every benchmark returns, the run's header, and the shared table printer."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NOISE_NOTE = (
    "This machine may be noisy (shared host, other jobs, CPU frequency changes): read the "
    "figures against the loopback floor measured in the same run."
)


def fmt_ms(value: Any) -> str:
    """Milliseconds with two decimals; blank when there is no value."""
    return "" if value is None else f"{value:.2f}"


def fmt_int(value: Any) -> str:
    """A count or rate, rounded, with thousands separators."""
    return "" if value is None else f"{value:,.0f}"


def fmt_ratio(value: Any) -> str:
    """A ratio of two rates (1.00 = as fast as the baseline)."""
    return "" if value is None else f"{value:.2f}"


def fmt_pct(value: Any) -> str:
    """CPU in percent of one core; several processes' values joined by '+'."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "+".join(fmt_pct(v) or "?" for v in value)
    return f"{value:.0f}"


def fmt_mib(value: Any) -> str:
    """KiB as MiB with one decimal."""
    return "" if value is None else f"{value / 1024:.1f}"


def fmt_plain(value: Any) -> str:
    """The value on one line (an error message may span several)."""
    return "" if value is None else " ".join(str(value).split())


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its heading, and how a value is printed."""

    key: str
    heading: str
    fmt: Callable[[Any], str] = fmt_plain
    numeric: bool = False


@dataclass
class Table:
    """A smaller table printed under a benchmark's main one (the processes it started)."""

    title: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """A benchmark's result: rows of plain values (JSON-ready) and how to print them."""

    name: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def row_failed(row: dict[str, Any]) -> bool:
    """A row whose case did not run to the end: its note says why. A skipped row (the peer
    queue is not installed) is no failure."""
    note = str(row.get("note", "ok"))
    return note != "ok" and not note.startswith("skipped")


def run_metadata() -> dict[str, Any]:
    """Date, interpreter, machine and the command line, for the header of every run."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:]),
        "note": NOISE_NOTE,
    }


def format_header(meta: dict[str, Any]) -> str:
    lines = [
        f"date:     {meta['date']}",
        f"python:   {meta['python']} ({meta['implementation']}) on {meta['platform']}",
        f"cpus:     {meta['cpu_count']}",
        f"command:  {meta['command']}",
        f"note:     {meta['note']}",
    ]
    return "\n".join(lines)


def format_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    """Aligned plain-text columns: numbers to the right, text to the left, the last
    column left unpadded so long notes do not widen the others."""
    cells = [[col.fmt(row.get(col.key)) for col in columns] for row in rows]
    widths = [
        max([len(col.heading)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, (col, value) in enumerate(zip(columns, values, strict=True)):
            if i == len(columns) - 1:
                parts.append(value)
            elif col.numeric:
                parts.append(value.rjust(widths[i]))
            else:
                parts.append(value.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line([c.heading for c in columns]), rule] + [line(v) for v in cells])


def format_report(report: Report) -> str:
    parts = [f"== {report.name} =="]
    settings = report.meta.get("settings")
    if settings:
        parts.append("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    parts.append(format_table(report.columns, report.rows))
    parts.extend(f"note: {note}" for note in report.notes)
    for table in report.tables:
        parts.append(f"-- {report.name}: {table.title} --")
        parts.append(format_table(table.columns, table.rows))
    return "\n".join(parts)


def format_text(meta: dict[str, Any], reports: Sequence[Report]) -> str:
    return "\n\n".join([format_header(meta)] + [format_report(r) for r in reports]) + "\n"


def format_json(meta: dict[str, Any], reports: Sequence[Report]) -> str:
    document = {
        "meta": meta,
        "benchmarks": [
            {
                "name": r.name,
                "meta": r.meta,
                "rows": r.rows,
                "notes": r.notes,
                "tables": {t.title: t.rows for t in r.tables},
            }
            for r in reports
        ],
    }
    return json.dumps(document, indent=2, default=str) + "\n"
