"""Helpers the throughput benchmarks share: progress lines, failed rows, the folder of
process logs, the task bodies they send, and a plain connection to the database."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import Report, row_failed

BACKENDS = ("postgresql", "sqlite")
FAR_FUTURE = "2099-01-01T00:00:00Z"
# The enqueue body of the issue: due far in the future, so nothing is ever delivered.
FUTURE_TASK: dict[str, Any] = {
    "webhookUrl": "http://127.0.0.1:9/x",
    "executeAt": FAR_FUTURE,
    "payload": {"n": 1},
}
# SQLite's clock as the scheduler reads it (store/sql/sqlite.sql, "now"), in microseconds.
SQLITE_NOW_US = "((CAST(round(julianday('now') * 86400000.0) AS INTEGER) - 210866760000000) * 1000)"


def progress(bench: str, message: str) -> None:
    print(f"[{bench} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def failed_note(exc: BaseException | str) -> str:
    reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return f"FAILED: {one_line(reason)}"


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def backends_from(choice: str) -> tuple[str, ...]:
    return BACKENDS if choice == "both" else (choice,)


def add_backend_argument(parser: Any) -> None:
    parser.add_argument(
        "--backend",
        choices=("postgresql", "sqlite", "both"),
        default="both",
        help="database backend(s) to measure (default: both)",
    )


@contextlib.contextmanager
def log_folder(report: Report) -> Iterator[Path]:
    """A temporary folder for the processes' stderr, removed at the end unless a log has
    something in it or a case failed (then a note under the table names it)."""
    folder = Path(tempfile.mkdtemp(prefix=f"scheduler-bench-{report.name}-"))
    try:
        yield folder
    finally:
        logs = list(folder.glob("*.log"))
        if any(p.stat().st_size for p in logs) or any(row_failed(r) for r in report.rows):
            report.notes.append(f"process logs kept in {folder}")
            report.meta["log_dir"] = str(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


class Database:
    """A plain connection to a benchmark's database, in autocommit mode: psycopg2 for
    postgresql://, sqlite3 for sqlite:///. SQL is written per backend by the caller."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = "postgresql" if url.startswith("postgresql") else "sqlite"
        if self.backend == "postgresql":
            import psycopg2

            self.conn: Any = psycopg2.connect(url, connect_timeout=10)
            self.conn.autocommit = True
        else:
            self.path = sqlite_file(url)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def execute(self, sql: str, params: Any = ()) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
        finally:
            cur.close()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None
        finally:
            cur.close()

    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def postgres_pids(self) -> list[int]:
        """The PostgreSQL processes working for this database: its backends (this
        connection's included), the server's own background processes (WAL writer,
        checkpointer, ...) and the postmaster. Empty on SQLite."""
        if self.backend != "postgresql":
            return []
        pids = [
            int(r[0])
            for r in self.rows(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() OR datname IS NULL"
            )
        ]
        postmaster = _parent_pid(pids[0]) if pids else None
        return pids + ([postmaster] if postmaster else [])

    def application_names(self) -> set[str]:
        """application_name of every connection to this database (PostgreSQL)."""
        return {
            str(r[0])
            for r in self.rows(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            )
        }

    def close(self) -> None:
        self.conn.close()


def sqlite_file(url: str) -> str:
    """`sqlite:////abs/path.db` -> /abs/path.db (the benchmarks use absolute paths)."""
    return url.split("://", 1)[1][1:].split("?", 1)[0]


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    return int(text[text.rindex(b")") + 2 :].split()[1])


def has_file_open(pid: int, path: str) -> bool:
    """Whether process `pid` holds `path` open (a worker that opened its SQLite store)."""
    target = str(Path(path).resolve())
    folder = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in folder.iterdir():
            with contextlib.suppress(OSError):
                if str(fd.readlink()) == target:
                    return True
    return False
