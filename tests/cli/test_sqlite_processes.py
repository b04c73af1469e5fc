"""The `scheduler` command on SQLite, as a user on a fresh machine meets it: no database
variable at all, a file in the working directory, clear errors for URLs that name no
usable file.

What both backends share (several processes on one database, signals, kill -9 and
restart) runs on SQLite through the parametrized tests beside this file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler_core.migrations import load as load_migrations
from scheduler_core.runtime_config import RuntimeConfig
from tests.cli.conftest import Processes, api, enqueue
from tests.store.databases import require_backend
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _sqlite_under_test() -> None:
    require_backend("sqlite")


def run_without_database_url(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`scheduler <args>` in `cwd` with SCHEDULER_DATABASE_URL unset, as after pip install."""
    env = {k: v for k, v in os.environ.items() if k != "SCHEDULER_DATABASE_URL"}
    env["SCHEDULER_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "scheduler_core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_without_a_database_url_creates_scheduler_db_here_and_delivers(
    processes: Processes, tmp_path: Path, receiver: Receiver
) -> None:
    server = processes.serve(None, cwd=tmp_path)

    database = tmp_path / "scheduler.db"
    assert database.is_file()
    assert "applied migration 0001_initial.sql" in server.output
    assert api(server, "GET", "/readyz").json() == {"status": "ready"}
    assert api(server, "GET", "/api/v1/config").json() == RuntimeConfig().as_camel()
    [task] = enqueue(server, {"webhookUrl": receiver.url("/first-run"), "payload": {"hi": 1}})
    [call] = receiver.wait_for(1, "/first-run", timeout=30)
    assert call.header("X-Scheduler-Task-Id") == task["id"]
    assert call.json()["payload"] == {"hi": 1}
    wait_until(
        lambda: api(server, "GET", f"/api/v1/tasks/{task['id']}").json()["status"] == "resolved",
        timeout=30,
        message="for the task to be resolved",
    )

    # The same default file for every subcommand run from here.
    patched = api(server, "PATCH", "/api/v1/config", json={"selectSize": 9})
    assert patched.status_code == 200, patched.text
    shown = run_without_database_url(tmp_path, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "select_size=9" in shown.stdout.splitlines()
    conn = sqlite3.connect(database)
    try:
        [(mode,)] = conn.execute("PRAGMA journal_mode").fetchall()
        versions = conn.execute("SELECT version FROM scheduler_schema_migrations").fetchall()
    finally:
        conn.close()
    assert mode == "wal"
    assert versions == [(m.version,) for m in load_migrations("sqlite")]
    assert {p.name for p in tmp_path.iterdir()} <= {
        "scheduler.db",
        "scheduler.db-wal",
        "scheduler.db-shm",
    }


def _bad_urls(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Name -> (URL, what the one-line error must say)."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {
        "memory": ("sqlite:///:memory:", "in-memory SQLite database cannot be shared"),
        "missing-folder": (
            f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}",
            f"{tmp_path / 'no' / 'such'} is missing",
        ),
        "two-slashes": ("sqlite://relative.db", "not a SQLite URL"),
        "a-folder": (f"sqlite:///{folder}", f"cannot open SQLite database {folder}"),
    }


@pytest.mark.parametrize("command", [["migrate"], ["config", "show"], ["worker"], ["serve"]])
@pytest.mark.parametrize("case", ["memory", "missing-folder", "two-slashes", "a-folder"])
def test_a_url_that_names_no_usable_file_is_a_one_line_error(
    tmp_path: Path, command: list[str], case: str
) -> None:
    url, message = _bad_urls(tmp_path)[case]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = [*command, "--port", "0"] if command == ["serve"] else command

    result = run_without_database_url(cwd, *args, "--database-url", url)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(cwd.iterdir()) == [], "a file was created somewhere else instead"
    assert not (tmp_path / "no").exists()
