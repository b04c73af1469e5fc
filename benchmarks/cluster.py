"""Real processes for the benchmarks: the receiver, scheduler servers and workers, and the
throwaway databases they use. Every child is stopped by its pid, whatever happens."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import requests

from benchmarks.procfs import peak_rss_kb

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STOP_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 30.0
SCHEDULER_CLI = [sys.executable, "-m", "scheduler_core.cli"]


class ClusterError(RuntimeError):
    """A process or database the benchmark needs could not be set up."""


@dataclass(frozen=True)
class ProcessRecord:
    """A child that ended: its peak resident memory (VmHWM read just before it was
    stopped, or the kernel's maxrss for a child that exited by itself) and exit code."""

    name: str
    pid: int
    peak_rss_kb: int | None
    exit_code: int | None


class ChildProcess:
    """A subprocess with its stderr in a file; `stop()` sends SIGTERM, then SIGKILL.

    Every child that ended is appended to `history`, so a benchmark can list the peak
    memory of each process it started."""

    running: list[ChildProcess] = []
    history: list[ProcessRecord] = []

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        stdout: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.stderr.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=stdout, stderr=self._log, env=env, cwd=log_dir, start_new_session=True
        )
        self.exit_code: int | None = None
        self.peak_rss_kb: int | None = None
        ChildProcess.running.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def died(self) -> str | None:
        """Why the process is gone, or None while it runs."""
        code = self.proc.poll()
        if code is None:
            return None
        tail = self.stderr_tail(1)
        last = f", last stderr line: {tail[0]}" if tail else ""
        return f"{self.name} (pid {self.pid}) exited with code {code}{last}; see {self.log_path}"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; return the exit code."""
        if self not in ChildProcess.running:
            return self.exit_code
        if self.proc.poll() is None:
            self.peak_rss_kb = peak_rss_kb(self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._finish()
        return self.exit_code

    def wait_exit(self, timeout: float) -> int:
        """Wait for a child that ends by itself (a migration); its peak memory is the
        kernel's maxrss from wait4. Stopped with SIGKILL after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.proc.returncode is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.peak_rss_kb = usage.ru_maxrss
            elif time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"{self.name} did not finish within {timeout:.0f}s")
            else:
                time.sleep(0.02)
        self._finish()
        return self.proc.returncode

    def _finish(self) -> None:
        self.exit_code = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        ChildProcess.running.remove(self)
        ChildProcess.history.append(
            ProcessRecord(self.name, self.pid, self.peak_rss_kb, self.exit_code)
        )

    def stderr_tail(self, lines: int = 5) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


@atexit.register
def stop_all_children() -> None:
    for child in list(ChildProcess.running):
        child.stop(timeout=5)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (scheduler logs its port only at INFO level)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, with the repository on PYTHONPATH for `python -m benchmarks.*`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def read_line(child: ChildProcess, timeout: float) -> str:
    """The child's next stdout line, or ClusterError when none comes within `timeout`."""
    assert child.proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise ClusterError(f"{child.name} printed nothing within {timeout:.0f}s")
    line = child.proc.stdout.readline()
    if not line:
        raise ClusterError(child.died() or f"{child.name} closed its stdout")
    return line.decode().strip()


def spawn_with_port(name: str, module: str, log_dir: Path) -> tuple[ChildProcess, int]:
    """`python -m <module> --port 0`, which prints `PORT <n>` once it listens."""
    argv = [sys.executable, "-m", module, "--port", "0"]
    child = ChildProcess(name, argv, log_dir, python_env(), subprocess.PIPE)
    try:
        word, port = read_line(child, READY_TIMEOUT_S).split()
        if word != "PORT":
            raise ValueError(f"expected PORT <n>, got {word!r}")
        return child, int(port)
    except (ClusterError, ValueError) as exc:
        child.stop()
        raise ClusterError(f"{name} did not start: {exc}") from None


class Receiver:
    """`python -m benchmarks.receiver` in its own process, and a client for its records."""

    def __init__(self, log_dir: Path) -> None:
        self.child, self.port = spawn_with_port("receiver", "benchmarks.receiver", log_dir)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.hook_url = f"{self.base_url}/hook"
        self._session = requests.Session()
        self._next = 0
        self.first: dict[str, float] = {}  # task id -> first arrival (epoch seconds)
        self.count: dict[str, int] = {}  # task id -> requests received

    def refresh(self) -> None:
        """Fetch the records that arrived since the last call."""
        answer = self._session.get(f"{self.base_url}/arrivals?after={self._next}", timeout=10)
        answer.raise_for_status()
        body = answer.json()
        for task_id, _attempt, arrived in body["arrivals"]:
            self.count[task_id] = self.count.get(task_id, 0) + 1
            if task_id not in self.first or arrived < self.first[task_id]:
                self.first[task_id] = arrived
        self._next = body["next"]

    def stop(self) -> None:
        self._session.close()
        self.child.stop()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def postgresql_database(admin_url: str | None = None) -> Iterator[str]:
    """A fresh `scheduler_bench_<random>` database, dropped on exit; yields its URL."""
    import psycopg2

    admin = admin_url or os.environ.get("SCHEDULER_BENCH_ADMIN_URL") or DEFAULT_ADMIN_URL
    name = f"scheduler_bench_{secrets.token_hex(4)}"
    try:
        _admin_execute(admin, f'CREATE DATABASE "{name}"')
    except psycopg2.Error as exc:
        raise ClusterError(f"cannot create a PostgreSQL database via {admin}: {exc}") from None
    try:
        yield _with_database(admin, name)
    finally:
        _admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_execute(admin_url: str, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def postgresql_version(admin_url: str | None = None) -> str | None:
    import psycopg2

    admin = admin_url or os.environ.get("SCHEDULER_BENCH_ADMIN_URL") or DEFAULT_ADMIN_URL
    try:
        conn = psycopg2.connect(admin, connect_timeout=10)
    except psycopg2.Error:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            row: Any = cur.fetchone()
            return str(row[0])
    finally:
        conn.close()


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    """A SQLite file in a temporary folder, removed on exit; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="scheduler-bench-db-") as folder:
        yield f"sqlite:///{folder}/bench.db"


def scheduler_env(database_url: str) -> dict[str, str]:
    return python_env(
        {
            "SCHEDULER_DATABASE_URL": database_url,
            "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1",
            "SCHEDULER_LOG_LEVEL": "WARNING",
        }
    )


class SchedulerCluster:
    """Topology "serve": one `scheduler serve`. Topology "worker": `scheduler serve
    --no-dispatcher` for the API plus one `scheduler worker` that delivers. Topology "api":
    `scheduler serve --no-dispatcher` alone; `add_worker()` starts workers beside it.

    Each process connects to PostgreSQL with its own name as application_name (PGAPPNAME),
    so its backends can be told apart in pg_stat_activity."""

    def __init__(self, topology: str, database_url: str, log_dir: Path, label: str) -> None:
        self.topology = topology
        self.database_url = database_url
        self.env = scheduler_env(database_url)
        self.log_dir = log_dir
        self.label = label
        self.children: list[ChildProcess] = []
        self.workers: list[ChildProcess] = []
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start `scheduler serve` (with `--no-dispatcher` and a `scheduler worker` beside
        it in topology "worker": both migrate, which is safe at once) and wait until /readyz
        answers. The worker's readiness shows only in a delivery (it logs at INFO level)."""
        argv = [*SCHEDULER_CLI, "serve", "--port", str(self.port)]
        if self.topology == "worker":
            self._start("api", [*argv, "--no-dispatcher"])
            self.add_worker()
        elif self.topology == "api":
            self._start("api", [*argv, "--no-dispatcher"])
        else:
            self._start("serve", argv)
        self._wait_ready()

    def add_worker(self) -> ChildProcess:
        """One more `scheduler worker` on the same database (named worker, worker2, ...)."""
        suffix = str(len(self.workers) + 1) if self.workers else ""
        child = self._start(f"worker{suffix}", [*SCHEDULER_CLI, "worker"])
        self.workers.append(child)
        return child

    @property
    def api(self) -> ChildProcess:
        return self.children[0]

    def _start(self, role: str, argv: list[str]) -> ChildProcess:
        name = f"{self.label}-{role}"
        child = ChildProcess(name, argv, self.log_dir, {**self.env, "PGAPPNAME": name})
        self.children.append(child)
        return child

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            reason = self.died()
            if reason:
                raise ClusterError(reason)
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise ClusterError(f"{self.api_url}/readyz did not answer 200 in {READY_TIMEOUT_S:.0f}s")

    def died(self) -> str | None:
        for child in self.children:
            reason = child.died()
            if reason:
                return reason
        return None

    def stop(self) -> list[str]:
        """Stop every process (worker first); return what went wrong on the way."""
        problems = []
        for child in reversed(self.children):
            was_running = child.proc.poll() is None
            code = child.stop()
            if was_running and code != 0:
                problems.append(f"{child.name} exited with code {code} on SIGTERM")
        return problems


def patch_config(api_url: str, changes: dict[str, int]) -> None:
    """PATCH /api/v1/config with camelCase keys; ClusterError unless every one applied."""
    answer = requests.patch(f"{api_url}/api/v1/config", json=changes, timeout=10)
    body = answer.json() if answer.status_code == 200 else {}
    if any(body.get(key) != value for key, value in changes.items()):
        raise ClusterError(f"PATCH /api/v1/config answered {answer.status_code}: {answer.text}")


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database of `backend` ("postgresql" or "sqlite"); yields its URL."""
    manager = postgresql_database() if backend == "postgresql" else sqlite_database()
    with manager as url:
        yield url


def migrate(database_url: str, log_dir: Path, label: str) -> None:
    """`scheduler migrate` on the database, as its own process."""
    child = ChildProcess(
        f"{label}-migrate",
        [*SCHEDULER_CLI, "migrate", "--create"],
        log_dir,
        scheduler_env(database_url),
    )
    code = child.wait_exit(READY_TIMEOUT_S)
    if code != 0:
        tail = "; ".join(child.stderr_tail(2))
        raise ClusterError(f"scheduler migrate exited with code {code}: {tail}")


class Server:
    """A helper server in its own process that prints `PORT <n>`: the fast receiver
    (`benchmarks.fast_receiver`) or the no-op JSON endpoint (`benchmarks.noop_server`)."""

    def __init__(self, name: str, module: str, log_dir: Path) -> None:
        self.child, self.port = spawn_with_port(name, module, log_dir)
        self.base_url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def posts(self) -> int:
        """The fast receiver's count of POSTs answered so far."""
        answer = requests.get(f"{self.base_url}/count", timeout=10)
        answer.raise_for_status()
        return int(answer.json()["posts"])

    def stop(self) -> None:
        self.child.stop()
