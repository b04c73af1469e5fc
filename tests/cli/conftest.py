"""Fixtures for tests that run the real `scheduler` command in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from scheduler_core.runtime_config import BOUNDS
from tests.store.databases import empty_database
from tests.support.database import TestDatabase
from tests.support.processes import SchedulerProcess
from tests.support.receiver import Receiver

# Two cores shared with other suites: starting Python, Flask and psycopg2 can be slow.
STARTUP_TIMEOUT = 60.0
HTTP_TIMEOUT = 15.0


class CliProcess(SchedulerProcess):
    """Like SchedulerProcess, with a working directory of its own, optionally no database
    URL at all in its environment, and optionally stdout apart from stderr.

    With `split_output`, `output` is stderr alone and `stdout` is everything else.
    """

    def __init__(
        self,
        args: list[str],
        database_url: str | None,
        env: dict[str, str] | None = None,
        split_output: bool = False,
        cwd: Path | None = None,
    ):
        full_env = {**os.environ, "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})}
        if database_url is None:
            full_env.pop("SCHEDULER_DATABASE_URL", None)
        else:
            full_env["SCHEDULER_DATABASE_URL"] = database_url
        self.log_path = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".stderr")[1])
        self._log = self.log_path.open("wb")
        self.stdout_path: Path | None = None
        stdout: Any = self._log  # one file, as SchedulerProcess
        if split_output:
            self.stdout_path = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".stdout")[1])
            stdout = self._stdout = self.stdout_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler_core.cli", *args],
            stdout=stdout,
            stderr=self._log,
            env=full_env,
            cwd=cwd,
        )
        self.base_url = None

    @property
    def stdout(self) -> str:
        assert self.stdout_path is not None, "started without split_output"
        return self.stdout_path.read_text(errors="replace")

    def stop(self) -> None:
        super().stop()
        if self.stdout_path is not None:
            self._stdout.close()


class Processes:
    """Starts `scheduler` subprocesses and guarantees each is stopped after the test."""

    def __init__(self) -> None:
        self.started: list[SchedulerProcess] = []

    def spawn(
        self,
        args: list[str],
        database_url: str | None,
        env: dict[str, str] | None = None,
        split_output: bool = False,
        cwd: Path | None = None,
    ) -> SchedulerProcess:
        """`scheduler <args>`; database_url None leaves SCHEDULER_DATABASE_URL unset."""
        process = CliProcess(args, database_url, env, split_output, cwd)
        self.started.append(process)
        return process

    def serve(
        self,
        database_url: str | None,
        *extra: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        split_output: bool = False,
        cwd: Path | None = None,
    ) -> SchedulerProcess:
        """`scheduler serve --port 0`, as tests.support.processes.start_server, never leaked."""
        process = self.spawn(["serve", "--port", "0", *extra], database_url, env, split_output, cwd)
        if wait:
            process.wait_listening(STARTUP_TIMEOUT)
        return process

    def worker(
        self,
        database_url: str | None,
        *extra: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        cwd: Path | None = None,
    ) -> SchedulerProcess:
        process = self.spawn(["worker", *extra], database_url, env, cwd=cwd)
        if wait:
            process.wait_for_log("worker running", STARTUP_TIMEOUT)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()
        for process in self.started:
            # Shown by pytest only when the test failed.
            print(f"--- scheduler {process.proc.args[3:]} exit={process.proc.returncode}")
            print(process.output)
            process.log_path.unlink(missing_ok=True)
            stdout_path = getattr(process, "stdout_path", None)
            if stdout_path is not None:
                stdout_path.unlink(missing_ok=True)


@pytest.fixture
def processes() -> Iterator[Processes]:
    manager = Processes()
    try:
        yield manager
    finally:
        manager.stop_all()


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of the backend under test that has never been migrated, gone after the
    test (SQLite: a file that does not exist yet)."""
    with empty_database(backend, tmp_path, "scheduler_cli") as url:
        yield url


# -- helpers -----------------------------------------------------------------------------


def set_db_config(database_url: str, **columns: int) -> None:
    """Change the runtime configuration row directly, before any process starts."""
    assignments = ", ".join(f"{name} = %s" for name in columns)
    TestDatabase(database_url).execute(
        f"UPDATE scheduler_config SET {assignments}", tuple(columns.values())
    )


def db_config(database_url: str, queue: str = "default") -> dict[str, int]:
    """`queue`'s config row, every key, read straight from the database."""
    keys = list(BOUNDS)
    [row] = TestDatabase(database_url).execute(
        f"SELECT {', '.join(keys)} FROM scheduler_config WHERE queue = '{queue}'",
    )
    return dict(zip(keys, row, strict=True))


def db_tasks(database_url: str) -> dict[str, dict[str, Any]]:
    """Every stored task by id, read straight from the database (the API may be down)."""
    rows = TestDatabase(database_url).execute(
        "SELECT CAST(id AS TEXT), status, attempts, last_status_code FROM scheduler_tasks"
    )
    return {
        task_id: {"status": status, "attempts": attempts, "last_status_code": code}
        for task_id, status, attempts, code in rows
    }


def api(process: SchedulerProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    assert process.base_url is not None, "the server is not listening"
    return requests.request(method, process.base_url + path, timeout=HTTP_TIMEOUT, **kwargs)


def enqueue(process: SchedulerProcess, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """POST the tasks in one request and return them as created."""
    response = api(process, "POST", "/api/v1/tasks", json=list(bodies))
    assert response.status_code == 201, response.text
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def assert_stays(predicate: Callable[[], bool], seconds: float, message: str) -> None:
    """Fail as soon as `predicate()` turns false within an observation window.

    Used only to show that something does *not* happen; waiting for something that
    should happen uses wait_until.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.05)
    assert predicate(), message


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The shared loopback receiver, able to accept every connection of several
    dispatchers at once.

    socketserver listens with a backlog of 5; three dispatchers opening select_size
    connections each overflow it and the kernel resets some of them, which the scheduler
    rightly counts as failed attempts. Listening again only raises the backlog.
    """
    receiver = Receiver()
    receiver.server.socket.listen(256)
    yield receiver
    receiver.close()
