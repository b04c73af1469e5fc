"""The wheel: one top-level package, migrations and built-in plugins inside, and it works
when pip-installed (non-editable) into a fresh virtualenv, away from the source tree."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scheduler_core.migrations import load as load_migrations
from tests.store.databases import empty_database, query
from tests.support.database import BACKENDS
from tests.support.processes import LISTENING
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# The build works on a copy, so it neither writes build/ or *.egg-info into the working
# tree nor picks up anything that git would not carry.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tox",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "*.db",
    "*.db-*",
)


def run(
    args: list[str | Path], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("packaging")
    source = workdir / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    out = workdir / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, "."], cwd=source)
    [built] = out.glob("scheduler_core-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_only_top_level_package_is_scheduler_core(wheel: Path, wheel_files: list[str]) -> None:
    top_level = {
        name.split("/", 1)[0]
        for name in wheel_files
        if not name.split("/", 1)[0].endswith((".dist-info", ".data"))
    }

    assert top_level == {"scheduler_core"}
    [top_level_txt] = [n for n in wheel_files if n.endswith(".dist-info/top_level.txt")]
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(top_level_txt).decode().split() == ["scheduler_core"]
    for stray in ("plugins/", "migrations/", "tests/", "contrib/"):
        assert not [n for n in wheel_files if n.startswith(stray)], stray


def test_the_wheel_carries_migrations_sql_and_builtin_plugins(wheel_files: list[str]) -> None:
    required = {
        "scheduler_core/py.typed",
        "scheduler_core/plugins/http_delivery.py",
        "scheduler_core/testing/__init__.py",
        "scheduler_core/testing/pytest_plugin.py",
        "scheduler_core/migrations/postgresql/0001_initial.sql",
        "scheduler_core/migrations/sqlite/0001_initial.sql",
        "scheduler_core/store/sql/postgresql.sql",
        "scheduler_core/store/sql/sqlite.sql",
        "scheduler_core/api/templates/api_reference/index.html",  # the /docs page
    }
    # ... and everything the repo keeps in the folders that are mapped under scheduler_core.
    required |= {f"scheduler_core/plugins/{p.name}" for p in (REPO / "plugins").glob("*.py")}
    # The dashboard's templates and assets, the vendored chart library included.
    ui = REPO / "scheduler_core" / "ui"
    required |= {
        f"scheduler_core/ui/{p.relative_to(ui).as_posix()}"
        for folder in ("templates", "static")
        for p in (ui / folder).rglob("*")
        if p.is_file()
    }
    assert "scheduler_core/ui/static/vendor/uPlot.iife.min.js" in required
    required |= {
        f"scheduler_core/migrations/{p.relative_to(REPO / 'migrations').as_posix()}"
        for p in (REPO / "migrations").rglob("*.sql")
    }

    assert required <= set(wheel_files), sorted(required - set(wheel_files))


def test_the_wheel_declares_the_scheduler_command(wheel: Path, wheel_files: list[str]) -> None:
    [entry_points] = [n for n in wheel_files if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()

    assert "[console_scripts]" in text
    assert "scheduler = scheduler_core.cli:main" in text


@pytest.fixture(scope="module")
def unpacked_wheel(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's files as pip lays them out in site-packages (it is pure Python)."""
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_mypy_types_the_installed_package_its_plugins_and_migrations(
    unpacked_wheel: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    from tests.test_typing import PROBE, STRICT, assert_probe_is_fully_typed, mypy

    project = tmp_path / "a-plugin-project"
    project.mkdir()
    (project / "probe_plugin.py").write_text(PROBE)
    # The wheel on sys.path as site-packages is (mypy requires py.typed there); the repo
    # nowhere on it. Dependencies (flask, pluggy, ...) come from this environment.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MYPYPATH"}}

    def check(site: Path) -> subprocess.CompletedProcess[str]:
        return mypy(
            "--cache-dir",
            tmp_path / f"cache-{site.name}",
            "--follow-imports=silent",
            *STRICT,
            "probe_plugin.py",
            cwd=project,
            env={**env, "PYTHONPATH": str(site)},
        )

    assert_probe_is_fully_typed(check(unpacked_wheel))

    untyped = tmp_path / "untyped-site"
    shutil.copytree(unpacked_wheel, untyped)
    (untyped / "scheduler_core" / "py.typed").unlink()
    refused = check(untyped)
    assert refused.returncode != 0
    assert "missing library stubs or py.typed marker" in refused.stdout, refused.stdout


@pytest.fixture(scope="module")
def installed_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    workdir = tmp_path_factory.mktemp("elsewhere")
    run([sys.executable, "-m", "venv", venv], cwd=workdir)
    run([venv / "bin" / "python", "-m", "pip", "install", wheel], cwd=workdir, timeout=900)
    return venv


@pytest.fixture
def outside_env(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory away from the repo and an environment that cannot reach it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "SCHEDULER_DATABASE_URL"}
    }
    yield tmp_path, env


def test_the_installed_package_is_imported_from_the_venv_not_the_repo(
    installed_venv: Path, outside_env: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = outside_env
    code = (
        "import scheduler_core, scheduler_core.migrations as m, "
        "scheduler_core.plugins.http_delivery as h; print(scheduler_core.__file__); "
        "print(m.__file__); print(h.__file__); print(scheduler_core.__version__)"
    )

    result = run([installed_venv / "bin" / "python", "-c", code], cwd=cwd, env=env)

    *paths, version = result.stdout.split()
    for path in paths:
        assert Path(path).is_relative_to(installed_venv), path
    # Read from the installed metadata (0.0.0 would mean it was not found).
    assert version == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# Parametrized directly rather than through the session `backend` fixture, so pytest
# does not split this module around the other suites' backends and build the venv twice.
@pytest.mark.parametrize("db_backend", BACKENDS)
def test_the_installed_command_lists_plugins_and_migrates_a_fresh_database(
    installed_venv: Path,
    outside_env: tuple[Path, dict[str, str]],
    db_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cwd, env = outside_env
    scheduler = installed_venv / "bin" / "scheduler"

    plugins = run([scheduler, "plugins"], cwd=cwd, env=env)
    listed = {line.split()[0]: line.split()[1] for line in plugins.stdout.splitlines()[1:]}
    for name in ("http_delivery", "api_key_auth", "backoff_retry"):
        assert listed[f"scheduler_core.plugins.{name}"] == "scheduler-core", plugins.stdout

    with empty_database(db_backend, tmp_path_factory.mktemp("pkgdb"), "scheduler_pkg") as url:
        migrated = run([scheduler, "migrate", "--create", "--database-url", url], cwd=cwd, env=env)
        shipped = [m.name for m in load_migrations(db_backend)]
        # A fresh database: every shipped migration applied, and said so.
        assert migrated.stdout.strip() == (
            f"applied {len(shipped)} migrations: {', '.join(shipped)}; schema is up to date"
        ), migrated.stdout
        assert shipped[0] == "0001_initial.sql"
        for name in shipped:
            assert f"applied migration {name}" in migrated.stderr
        applied = query(url, "SELECT name FROM scheduler_schema_migrations ORDER BY version")
        assert applied == [(name,) for name in shipped]
        # The named SQL of the store ships too: reading the config needs it.
        shown = run([scheduler, "config", "show", "--database-url", url], cwd=cwd, env=env)
        assert "select_size=100" in shown.stdout.splitlines()
    assert not list(cwd.iterdir()), "the command left files in the working directory"


def test_the_installed_command_serves_and_delivers_with_no_database_configured(
    installed_venv: Path,
    outside_env: tuple[Path, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The README's first run: pip install, then `scheduler serve`, nothing else set up.
    cwd, env = outside_env
    log_path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    receiver = Receiver()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [installed_venv / "bin" / "scheduler", "serve", "--port", "0"],
            cwd=cwd,
            env={**env, "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> re.Match[str] | None:
            output = log_path.read_text(errors="replace")
            assert server.poll() is None, f"serve exited ({server.returncode}):\n{output}"
            return LISTENING.search(output)

        match = wait_until(listening, timeout=60, message="for the installed server to listen")
        base = f"http://{match.group(1)}:{match.group(2)}/api/v1"
        created = requests.post(
            f"{base}/tasks", json={"webhookUrl": receiver.url("/installed")}, timeout=15
        )
        assert created.status_code == 201, created.text
        [call] = receiver.wait_for(1, "/installed", timeout=30)
        assert call.header("X-Scheduler-Task-Id") == created.json()["id"]
        wait_until(
            lambda: (
                requests.get(f"{base}/tasks/{created.json()['id']}", timeout=15).json()["status"]
                == "resolved"
            ),
            timeout=30,
            message="for the task to be resolved",
        )
        assert (cwd / "scheduler.db").is_file()
        # The dashboard, its templates and assets read from the installed package.
        root = base.removesuffix("/api/v1")
        overview = requests.get(f"{root}/ui/", timeout=15)
        assert overview.status_code == 200, overview.text
        assert "Overview" in overview.text and 'data-count="resolved">1<' in overview.text
        for asset in ("ui.css", "ui.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
            assert requests.get(f"{root}/ui/static/{asset}", timeout=15).status_code == 200
        # The reference page renders from the installed template and the document.
        docs = requests.get(f"{root}/docs", timeout=15)
        assert docs.status_code == 200, docs.text[:2000]
        assert 'POST</span><span class="path">/api/v1/tasks' in docs.text
        assert (
            requests.get(f"{base}/openapi.json", timeout=15).json()["info"]["version"]
            == (tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
        )
    finally:
        receiver.close()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
    assert server.returncode == 0, log_path.read_text(errors="replace")
