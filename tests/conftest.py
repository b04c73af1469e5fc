"""Shared fixtures: a real PostgreSQL database, a real HTTP receiver, the app, a dispatcher.

PostgreSQL: SCHEDULER_TEST_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres)
must allow CREATE DATABASE; each test session gets its own throwaway database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.settings import Settings
from scheduler_core.store.postgres import PostgresStore
from tests.support.receiver import Receiver

os.environ.setdefault("SCHEDULER_DISABLE_PLUGIN_AUTOLOAD", "1")

ADMIN_URL = os.environ.get(
    "SCHEDULER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin_connection() -> Any:
    conn = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"scheduler_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = _admin_connection()
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    store = PostgresStore(url, pool_size=1)
    store.migrate()
    store.close()
    yield url
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def reset_database(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE scheduler_attempts, scheduler_tasks")
            defaults = RuntimeConfig().as_dict()
            assignments = ", ".join(f"{k} = %({k})s" for k in defaults)
            cur.execute(f"UPDATE scheduler_config SET {assignments}", defaults)
    finally:
        conn.close()


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The session database, emptied, with the default configuration."""
    reset_database(database_url)
    return database_url


@pytest.fixture
def settings(clean_database: str) -> Settings:
    return Settings(database_url=clean_database, load_entry_points=False)


@pytest.fixture
def store(settings: Settings) -> Iterator[PostgresStore]:
    store = PostgresStore(settings.database_url, pool_size=4)
    yield store
    store.close()


@pytest.fixture
def plugins(settings: Settings) -> PluginManager:
    return PluginManager(settings)


@pytest.fixture
def app(settings: Settings, store: PostgresStore, plugins: PluginManager) -> Flask:
    return create_app(settings, store=store, plugins=plugins, test_config={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def dispatcher(store: PostgresStore, plugins: PluginManager) -> Iterator[Dispatcher]:
    """A dispatcher that is not started: call `tick()` to run one cycle now."""
    dispatcher = Dispatcher(store, plugins)
    yield dispatcher
    dispatcher.stop(wait=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def set_config(store: PostgresStore, **columns: int) -> RuntimeConfig:
    return store.update_config(columns)
