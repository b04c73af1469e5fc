"""Shared fixtures: a real database of each backend, a real HTTP receiver, the app, a
dispatcher.

Every test that uses `database_url` (or a fixture built on it: `store`, `client`,
`dispatcher`...) runs once per backend in SCHEDULER_TEST_BACKENDS (default
"postgresql,sqlite"). PostgreSQL: SCHEDULER_TEST_ADMIN_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) must allow CREATE DATABASE; each test
session gets its own throwaway database. When PostgreSQL cannot be reached its tests are
skipped with a loud warning, except under CI=true, where that fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scheduler_core import targets
from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.settings import Settings
from scheduler_core.store import Store, open_store
from tests.support.database import (
    ADMIN_URL,
    BACKENDS,
    TestDatabase,
    postgres_database,
    postgres_unreachable_reason,
    sqlite_url,
)
from tests.support.receiver import Receiver

os.environ.setdefault("SCHEDULER_DISABLE_PLUGIN_AUTOLOAD", "1")

_POSTGRES_PROBLEM: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_postgres() -> None:
    """Skip (or, in CI, fail) the current test when PostgreSQL is not reachable."""
    if not _POSTGRES_PROBLEM:
        _POSTGRES_PROBLEM.append(postgres_unreachable_reason() or "")
    problem = _POSTGRES_PROBLEM[0]
    if problem:
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {problem}"
        if _in_ci():
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)


@pytest.hookimpl(trylast=True)  # after the summary, so the last thing on screen
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _POSTGRES_PROBLEM and _POSTGRES_PROBLEM[0]:
        terminalreporter.write_sep("!", "PostgreSQL TESTS WERE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({_POSTGRES_PROBLEM[0]}). Only "
            "SQLite was tested. Start PostgreSQL or set SCHEDULER_TEST_ADMIN_URL.",
            red=True,
        )


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this session, for PostgreSQL-only tests."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not in SCHEDULER_TEST_BACKENDS")
    require_postgres()
    with postgres_database() as url:
        store = open_store(url, pool_size=1)
        store.migrate()
        store.close()
        yield url


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database file for this session."""
    url = sqlite_url(tmp_path_factory.mktemp("sqlite"))
    store = open_store(url, pool_size=1)
    store.migrate()
    store.close()
    return url


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A migrated database of the backend under test."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    if backend == "sqlite":
        return str(request.getfixturevalue("sqlite_database_url"))
    raise ValueError(f"unknown backend {backend!r} in SCHEDULER_TEST_BACKENDS")


@pytest.fixture
def db(database_url: str) -> TestDatabase:
    """Direct SQL on the database under test."""
    return TestDatabase(database_url)


@pytest.fixture
def clean_database(database_url: str, db: TestDatabase) -> str:
    """The session database, emptied, with the default configuration."""
    db.reset()
    return database_url


@pytest.fixture
def settings(clean_database: str) -> Settings:
    return Settings(database_url=clean_database, load_entry_points=False)


@pytest.fixture(autouse=True)
def _default_target_policy() -> Iterator[None]:
    """The target policy is the process's (PluginManager sets it): no test leaves its
    SCHEDULER_ALLOWED/DENIED_TARGETS behind for the next."""
    yield
    targets.set_policy(targets.TargetPolicy())


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.database_url, pool_size=4)
    yield store
    store.close()


@pytest.fixture
def plugins(settings: Settings) -> PluginManager:
    return PluginManager(settings)


@pytest.fixture
def app(settings: Settings, store: Store, plugins: PluginManager) -> Flask:
    return create_app(settings, store=store, plugins=plugins, test_config={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def dispatcher(store: Store, plugins: PluginManager) -> Iterator[Dispatcher]:
    """A dispatcher that is not started: call `tick()` to run one cycle now."""
    dispatcher = Dispatcher(store, plugins)
    yield dispatcher
    dispatcher.stop(wait=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def set_config(store: Store, **columns: int) -> RuntimeConfig:
    return store.update_config(columns)


__all__ = ["ADMIN_URL", "Path", "set_config"]
