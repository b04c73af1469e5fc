"""`scheduler migrate`, `config show|set`, `plugins`, `--version`, `--database-url`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from scheduler_core.migrations import load as load_migrations
from scheduler_core.plugin_manager import BUILTIN_PLUGINS
from scheduler_core.runtime_config import RuntimeConfig
from tests.cli.conftest import Processes, api, db_config
from tests.store.databases import UNREACHABLE_URL, dialect_of, query, table_names
from tests.support.processes import run_cli

pytestmark = pytest.mark.slow

DEFAULTS = RuntimeConfig().as_dict()
DEFAULT_LINES = [f"{key}={value}" for key, value in DEFAULTS.items()]


def applied_versions(database_url: str) -> list[int]:
    rows = query(database_url, "SELECT version FROM scheduler_schema_migrations ORDER BY 1")
    return [v for (v,) in rows]


def all_versions(database_url: str) -> list[int]:
    return [m.version for m in load_migrations(dialect_of(database_url))]


# -- migrate ------------------------------------------------------------------------------


def test_migrate_creates_the_schema_on_an_empty_database_then_does_nothing(
    empty_database_url: str,
) -> None:
    first = run_cli(empty_database_url, "migrate", "--create")

    assert first.returncode == 0, first.stderr
    names = [m.name for m in load_migrations(dialect_of(empty_database_url))]
    assert first.stdout.strip() == (
        f"applied {len(names)} migrations: {', '.join(names)}; schema is up to date"
    )
    assert first.stdout.startswith("applied ") and "0001_initial.sql, 0002_" in first.stdout
    assert "database: " in first.stderr
    assert "applied migration 0001_initial.sql" in first.stderr
    assert {"scheduler_tasks", "scheduler_attempts", "scheduler_config"} <= table_names(
        empty_database_url
    )
    assert applied_versions(empty_database_url) == all_versions(empty_database_url)

    second = run_cli(empty_database_url, "migrate")

    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "schema is up to date"
    assert "applied migration" not in second.stderr
    assert applied_versions(empty_database_url) == all_versions(empty_database_url)


def test_migrate_processes_started_at_once_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    env = {
        **os.environ,
        "SCHEDULER_DATABASE_URL": empty_database_url,
        "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "scheduler_core.cli", "migrate", "--create"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(5)
    ]
    try:
        results = [(p.wait(timeout=120), *p.communicate(timeout=30)) for p in started]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()

    for code, stdout, stderr in results:
        assert code == 0, stderr
        assert stdout.strip().endswith("schema is up to date")
        assert "Traceback" not in stderr
        assert "database is locked" not in stderr
    applied_logs = sum(
        stderr.count("applied migration 0001_initial.sql") for _, _, stderr in results
    )
    assert applied_logs == 1
    # One process applied the migrations and says which; the others found nothing to do.
    names = [m.name for m in load_migrations(dialect_of(empty_database_url))]
    said = sorted(stdout.strip() for _, stdout, _ in results)
    assert said == [
        f"applied {len(names)} migrations: {', '.join(names)}; schema is up to date",
        *["schema is up to date"] * 4,
    ]
    assert applied_versions(empty_database_url) == all_versions(empty_database_url)
    assert query(empty_database_url, "SELECT count(*) FROM scheduler_config") == [(1,)]


# -- config show / set --------------------------------------------------------------------


def test_config_show_prints_each_key_with_its_default(clean_database: str) -> None:
    result = run_cli(clean_database, "config", "show")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == DEFAULT_LINES


def test_config_show_json_prints_an_object(clean_database: str) -> None:
    result = run_cli(clean_database, "config", "show", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == DEFAULTS


def test_config_set_changes_what_show_and_the_api_report(
    processes: Processes, clean_database: str
) -> None:
    result = run_cli(clean_database, "config", "set", "base_interval_ms=500", "select_size=20")

    assert result.returncode == 0, result.stderr
    expected = {**DEFAULTS, "base_interval_ms": 500, "select_size": 20}
    assert result.stdout.splitlines() == [f"{k}={v}" for k, v in expected.items()]
    shown = run_cli(clean_database, "config", "show", "--json")
    assert json.loads(shown.stdout) == expected
    server = processes.serve(clean_database)
    config = api(server, "GET", "/api/v1/config").json()
    assert (config["baseIntervalMs"], config["selectSize"]) == (500, 20)

    # The other way round: the API edits the very row the CLI reads.
    patched = api(server, "PATCH", "/api/v1/config", json={"maxRetries": 9})
    assert patched.status_code == 200, patched.text
    assert "max_retries=9" in run_cli(clean_database, "config", "show").stdout.splitlines()


@pytest.mark.parametrize(
    ("assignments", "key", "reason"),
    [
        (["colour=3"], "colour", "Unknown key"),
        (["select_size=many"], "select_size", "Must be an integer"),
        (["select_size=2.5"], "select_size", "Must be an integer"),
        (["select_size=null"], "select_size", "Must be an integer"),
        (["select_size="], "select_size", "Must be an integer"),
        (["select_size=0"], "select_size", "Must be between 1 and 10000"),
        (["max_retries=-1"], "max_retries", "Must be between 0 and 1000"),
        (["base_interval_ms=3600001"], "base_interval_ms", "Must be between 10 and 3600000"),
        (
            ["retry_backoff_max_ms=999"],
            "retry_backoff_max_ms",
            "Must be at least retry_backoff_ms (1000)",
        ),
        (
            ["retry_backoff_ms=5000", "retry_backoff_max_ms=4000"],
            "retry_backoff_max_ms",
            "Must be at least retry_backoff_ms (5000)",
        ),
        (["select_size"], "select_size", "is not KEY=VALUE"),
        # One bad value refuses the whole command, the good one included.
        (["base_interval_ms=500", "select_size=0"], "select_size", "Must be between"),
        (["base_interval_ms=500", "select_size"], "select_size", "is not KEY=VALUE"),
    ],
    ids=[
        "unknown-key",
        "word",
        "fraction",
        "null",
        "empty",
        "below-min",
        "negative",
        "above-max",
        "max-below-backoff",
        "both-set-inverted",
        "missing-equals",
        "one-bad-of-two",
        "one-malformed-of-two",
    ],
)
def test_config_set_refuses_a_bad_value_names_the_key_and_changes_nothing(
    clean_database: str, assignments: list[str], key: str, reason: str
) -> None:
    result = run_cli(clean_database, "config", "set", *assignments)

    assert result.returncode != 0
    assert key in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert db_config(clean_database) == DEFAULTS


# -- options every subcommand shares ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["config", "show"],
        ["config", "show", "--json"],
        ["config", "set", "select_size=7"],
        ["plugins"],
        ["plugins", "--json"],
    ],
    ids=lambda args: " ".join(args),
)
def test_database_url_option_is_accepted_and_wins_over_the_environment(
    clean_database: str, args: list[str]
) -> None:
    result = run_cli(
        None,
        *args,
        "--database-url",
        clean_database,
        env={"SCHEDULER_DATABASE_URL": UNREACHABLE_URL},
    )

    assert result.returncode == 0, result.stderr


def test_serve_and_worker_accept_the_database_url_option(
    processes: Processes, clean_database: str
) -> None:
    server = processes.serve(UNREACHABLE_URL, "--database-url", clean_database)
    worker = processes.worker(UNREACHABLE_URL, "--database-url", clean_database)

    assert api(server, "GET", "/readyz").status_code == 200
    assert worker.proc.poll() is None


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["config", "show"],
        ["config", "set", "select_size=5"],
        ["worker"],
        ["serve", "--port", "0"],
    ],
    ids=lambda args: args[0] if args[0] != "config" else " ".join(args[:2]),
)
def test_an_unreachable_database_gives_a_one_line_error_and_a_failing_exit(
    args: list[str],
) -> None:
    url_with_password = "postgresql://postgres:hunter2@127.0.0.1:1/scheduler_nowhere"

    result = run_cli(url_with_password, *args)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: cannot connect to PostgreSQL")
    assert "hunter2" not in result.stderr + result.stdout


def test_an_unsupported_database_url_is_refused_clearly() -> None:
    result = run_cli("mysql://root@127.0.0.1/db", "migrate")

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: unsupported database URL scheme 'mysql': use postgresql://... or sqlite:///..."
    ]


# -- plugins, --version -------------------------------------------------------------------


def table_rows(output: str) -> list[dict[str, str]]:
    """A table the CLI printed, each line cut at the columns of its header line."""
    header, *lines = output.splitlines()
    names = header.split()
    starts = [header.index(name) for name in names]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines
    ]


def test_plugins_lists_the_builtins_in_a_table() -> None:
    result = run_cli(None, "plugins")

    assert result.returncode == 0, result.stderr
    core = version("scheduler-core")
    assert table_rows(result.stdout) == [
        {
            "NAME": name,
            "DISTRIBUTION": "scheduler-core",
            "VERSION": core,
            "SCHEMES": schemes,
            "HOOKS": hooks,
        }
        for name, schemes, hooks in [
            ("scheduler_core.attempt", "-", "scheduler_run_attempt"),
            (
                "scheduler_core.plugins.http_delivery",
                "http, https",
                "scheduler_deliver, scheduler_delivery_schemes",
            ),
            ("scheduler_core.plugins.api_key_auth", "-", "scheduler_authorize"),
            ("scheduler_core.plugins.backoff_retry", "-", "scheduler_retry_decision"),
            ("scheduler_core.plugins.delivery_log", "-", "scheduler_run_attempt"),
            (
                "scheduler_core.plugins.metrics",
                "-",
                "scheduler_attempt_lost, scheduler_run_attempt, scheduler_task_enqueued",
            ),
        ]
    ]


def test_plugins_json_describes_each_plugin() -> None:
    result = run_cli(None, "plugins", "--json")

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["plugins"]
    assert [row["name"] for row in rows] == list(BUILTIN_PLUGINS)
    assert all(row["builtin"] and row["distribution"] == "scheduler-core" for row in rows)
    assert {row["version"] for row in rows} == {version("scheduler-core")}
    assert rows[1] == {
        "name": "scheduler_core.plugins.http_delivery",
        "builtin": True,
        "distribution": "scheduler-core",
        "version": version("scheduler-core"),
        "hooks": ["scheduler_deliver", "scheduler_delivery_schemes"],
        "schemes": ["http", "https"],
    }


def test_version_prints_the_installed_distribution_version() -> None:
    result = run_cli(None, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"scheduler, version {version('scheduler-core')}"
