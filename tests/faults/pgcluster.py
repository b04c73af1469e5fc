"""A private, throwaway PostgreSQL cluster that outage tests may stop, crash and restart.

The shared PostgreSQL the other suites use is never touched: this cluster lives in a
temporary directory, listens on a free loopback port of its own, and is removed at the
end. As root, its commands run as the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2

COMMAND_TIMEOUT = 90.0


def find_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, or None."""

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/", path)
        return tuple(int(p) for p in found.group(1).split(".")) if found else (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def unavailable_reason() -> str | None:
    """None when a private cluster can be made here, else why not."""
    bindir = find_bindir()
    if bindir is None:
        return "no initdb found (looked in /usr/lib/postgresql/*/bin and PATH)"
    if not (bindir / "pg_ctl").exists():
        return f"{bindir} has initdb but no pg_ctl"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not available"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateCluster:
    def __init__(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="scheduler-faults-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    # -- commands ----------------------------------------------------------------

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bindir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self._command(tool, *args),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                f"{self.log_tail()}"
            )
        return result

    def start(self) -> float:
        """Start the server and wait until it accepts connections; return the seconds."""
        began = time.monotonic()
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.logfile), "-w",
            "-t", "60", "start",
        )  # fmt: skip
        return time.monotonic() - began

    def stop(self, mode: str = "immediate") -> float:
        """Stop the server (`immediate`: like a crash, no checkpoint); return the seconds."""
        began = time.monotonic()
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")
        return time.monotonic() - began

    def running(self) -> bool:
        result = subprocess.run(
            self._command("pg_ctl", "-D", str(self.datadir), "status"),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            cwd=self.root,
        )
        return result.returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- databases ---------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.url(), connect_timeout=5)
        conn.autocommit = True
        return conn

    def create_database(self) -> str:
        name = f"scheduler_faults_{uuid.uuid4().hex[:10]}"
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_connections(self, database: str) -> int:
        """pg_terminate_backend every connection to `database`; return how many."""
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0
