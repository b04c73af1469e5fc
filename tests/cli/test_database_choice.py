"""Commands that open the database themselves say which one, and never make a new SQLite
file by accident.

Issue 11's reproduction: `scheduler config set` run from another directory silently
created an empty ./scheduler.db there and changed nothing the server reads. Now `migrate`,
`config show|set` and `rotate-key` refuse to create a SQLite file without `--create`
(naming the file and how to go on) and print `database: ...` when they ran; `serve` and
`worker` still create it; commands that need no database (`plugins`, `--help`, the
commands that talk to a server) never touch one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler_core.cli import shown_database_url
from scheduler_core.encryption import generate_key
from tests.cli.conftest import Processes, db_config
from tests.cli.test_sqlite_processes import run_without_database_url
from tests.support.processes import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty directory, as the one an operator happens to be in."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def refusal(folder: Path) -> str:
    return (
        f"Error: no SQLite database at {folder / 'scheduler.db'}; nothing was created. Point "
        "SCHEDULER_DATABASE_URL or --database-url at the server's database, or add --create "
        "to make a new one there."
    )


def test_config_set_from_another_directory_creates_nothing_and_says_so(elsewhere: Path) -> None:
    result = run_without_database_url(elsewhere, "config", "set", "base_interval_ms=500")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [refusal(elsewhere)]
    assert result.stdout == ""
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [["migrate"], ["config", "show"], ["config", "show", "--json"], ["rotate-key"]],
    ids=" ".join,
)
def test_commands_that_open_the_database_refuse_to_create_it(
    elsewhere: Path, args: list[str]
) -> None:
    env_key = {"SCHEDULER_ENCRYPTION_KEY": generate_key()} if args == ["rotate-key"] else {}
    result = run_cli_in(elsewhere, *args, env=env_key)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [refusal(elsewhere)]
    assert list(elsewhere.iterdir()) == []


def test_create_makes_the_file_and_every_run_names_its_database(elsewhere: Path) -> None:
    created = run_without_database_url(
        elsewhere, "config", "set", "base_interval_ms=500", "--create"
    )
    assert created.returncode == 0, created.stderr
    database = elsewhere / "scheduler.db"
    assert database.exists()
    assert f"database: sqlite:///scheduler.db ({database})" in created.stderr.splitlines()

    shown = run_without_database_url(elsewhere, "config", "show")  # exists now: no flag needed
    assert shown.returncode == 0, shown.stderr
    assert "base_interval_ms=500" in shown.stdout.splitlines()
    assert shown.stderr.strip().splitlines() == [f"database: sqlite:///scheduler.db ({database})"]


def test_config_set_names_the_database_it_changed(clean_database: str) -> None:
    result = run_cli(clean_database, "config", "set", "select_size=7")

    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("database: ")]
    assert line == f"database: {shown_database_url(clean_database)}"
    assert db_config(clean_database)["select_size"] == 7


def test_the_database_line_masks_the_password_and_keeps_the_user() -> None:
    shown = shown_database_url("postgresql://app:hunter2@db.example:5432/jobs?sslpassword=x9")
    assert shown == "postgresql://app:***@db.example:5432/jobs?sslpassword=***"
    assert shown_database_url("postgresql://app@db/jobs") == "postgresql://app@db/jobs"
    assert shown_database_url("postgresql:///jobs") == "postgresql:///jobs"


@pytest.mark.parametrize(
    "args",
    [
        ["plugins"],
        ["plugins", "--json"],
        ["--help"],
        ["--version"],
        ["tasks", "--help"],
        ["enqueue", "--help"],
        ["generate-key"],
    ],
    ids=" ".join,
)
def test_commands_that_need_no_database_never_touch_one(elsewhere: Path, args: list[str]) -> None:
    # Installed plugins load as after a pip install: autoload is on.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SCHEDULER_DATABASE_URL", "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD"}
    }
    result = subprocess.run(
        [sys.executable, "-m", "scheduler_core.cli", *args],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list(elsewhere.iterdir()) == []


def test_worker_still_creates_the_database(processes: Processes, elsewhere: Path) -> None:
    worker = processes.worker(None, cwd=elsewhere)
    assert (elsewhere / "scheduler.db").exists()
    worker.stop()
    assert worker.proc.returncode == 0


def run_cli_in(folder: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SCHEDULER_DATABASE_URL"}
    full_env.update({"SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "scheduler_core.cli", *args],
        cwd=folder,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
