"""Fixtures: the core's real API and dispatcher with this plugin, a SQLite database per
test, the shared NATS JetStream broker (SCHEDULER_TEST_NATS_URL, default
nats://127.0.0.1:4222), and brokers of a test's own (nats-server subprocesses) for
stopping, restarting and configuring.

When the shared broker or the nats-server binary is missing, the tests that need them are
skipped, except under CI=true, where that fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from nats_support import JetStream, NatsServer, free_port

import scheduler_core_nats
from scheduler_core import targets
from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store, open_store

SHARED_URL = os.environ.get("SCHEDULER_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = os.environ.get("SCHEDULER_TEST_NATS_SERVER") or shutil.which(
    "nats-server", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
)


def _missing(message: str) -> None:
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message} (CI=true: the NATS tests must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_url() -> str:
    """The shared JetStream broker's URL; the test is skipped (failed in CI) without it."""
    host, _, port = SHARED_URL.removeprefix("nats://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        _missing(f"NATS is not reachable at {SHARED_URL}: {exc}")
    return SHARED_URL


@pytest.fixture
def jetstream(shared_url: str) -> Iterator[JetStream]:
    """Streams on the shared broker, each on its own subject, deleted after the test."""
    admin = JetStream(shared_url, cleanup=True)
    yield admin
    admin.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A broker of this test's own, stopped at the end: `stop()` and `start()` it to take
    it down and bring it back on the same port, with the same store."""
    if not NATS_SERVER:
        _missing("nats-server is not installed (apt-get install nats-server)")
    assert NATS_SERVER is not None
    server = NatsServer(NATS_SERVER, free_port(), tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'scheduler.db'}", load_entry_points=False)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.database_url, pool_size=4)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def plugins(settings: Settings) -> PluginManager:
    return PluginManager(settings, extra_plugins=(scheduler_core_nats,))


@pytest.fixture
def client(settings: Settings, store: Store, plugins: PluginManager) -> FlaskClient:
    app = create_app(settings, store=store, plugins=plugins, test_config={"TESTING": True})
    return app.test_client()


@pytest.fixture
def dispatcher(store: Store, plugins: PluginManager) -> Iterator[Dispatcher]:
    """Not started: `tick()` runs one round now."""
    dispatcher = Dispatcher(store, plugins)
    yield dispatcher
    dispatcher.stop(wait=True)


@pytest.fixture(autouse=True)
def _fresh_plugin_state() -> Iterator[None]:
    """No test inherits another's connections, or its target policy."""
    yield
    scheduler_core_nats.shutdown()
    targets.set_policy(targets.TargetPolicy())
