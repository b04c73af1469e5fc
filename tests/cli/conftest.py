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

from tests.store.databases import query, throwaway_database
from tests.support.processes import SchedulerProcess

# Two cores shared with other suites: starting Python, Flask and psycopg2 can be slow.
STARTUP_TIMEOUT = 60.0
HTTP_TIMEOUT = 15.0


class SplitOutputProcess(SchedulerProcess):
    """Like SchedulerProcess, but stdout goes to its own file so stderr can be told apart.

    `output` is stderr alone; `stdout` is everything else.
    """

    def __init__(self, args: list[str], database_url: str, env: dict[str, str] | None = None):
        full_env = {
            **os.environ,
            "SCHEDULER_DATABASE_URL": database_url,
            "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1",
            **(env or {}),
        }
        self.log_path = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".stderr")[1])
        self.stdout_path = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".stdout")[1])
        self._log = self.log_path.open("wb")
        self._stdout = self.stdout_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler_core.cli", *args],
            stdout=self._stdout,
            stderr=self._log,
            env=full_env,
        )
        self.base_url = None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stop(self) -> None:
        super().stop()
        self._stdout.close()


class Processes:
    """Starts `scheduler` subprocesses and guarantees each is stopped after the test."""

    def __init__(self) -> None:
        self.started: list[SchedulerProcess] = []

    def spawn(
        self,
        args: list[str],
        database_url: str,
        env: dict[str, str] | None = None,
        split_output: bool = False,
    ) -> SchedulerProcess:
        cls = SplitOutputProcess if split_output else SchedulerProcess
        process = cls(args, database_url, env)
        self.started.append(process)
        return process

    def serve(
        self,
        database_url: str,
        *extra: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        split_output: bool = False,
    ) -> SchedulerProcess:
        """`scheduler serve --port 0`, as tests.support.processes.start_server, never leaked."""
        process = self.spawn(["serve", "--port", "0", *extra], database_url, env, split_output)
        if wait:
            process.wait_listening(STARTUP_TIMEOUT)
        return process

    def worker(
        self, database_url: str, *extra: str, env: dict[str, str] | None = None, wait: bool = True
    ) -> SchedulerProcess:
        process = self.spawn(["worker", *extra], database_url, env)
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
def empty_database_url() -> Iterator[str]:
    """A database of its own that has never been migrated, dropped after the test."""
    with throwaway_database("scheduler_cli") as url:
        yield url


# -- helpers -----------------------------------------------------------------------------


def set_db_config(database_url: str, **columns: int) -> None:
    """Change the runtime configuration row directly, before any process starts."""
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    query(database_url, f"UPDATE scheduler_config SET {assignments}", columns)


def db_config(database_url: str) -> dict[str, int]:
    conn_rows = query(
        database_url,
        "SELECT base_interval_ms, http_callback_timeout_ms, select_size, max_retries,"
        " retry_backoff_ms, retry_backoff_max_ms, retention_hours FROM scheduler_config",
    )
    [row] = conn_rows
    keys = (
        "base_interval_ms",
        "http_callback_timeout_ms",
        "select_size",
        "max_retries",
        "retry_backoff_ms",
        "retry_backoff_max_ms",
        "retention_hours",
    )
    return dict(zip(keys, row, strict=True))


def db_tasks(database_url: str) -> dict[str, dict[str, Any]]:
    """Every stored task by id, read straight from the database (the API may be down)."""
    rows = query(
        database_url,
        "SELECT id::text, status, attempts, last_status_code FROM scheduler_tasks",
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
