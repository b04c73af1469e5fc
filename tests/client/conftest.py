"""Fixtures for the client and remote CLI tests: the real API served by the real waitress
server (`scheduler_core.serving.create_server`, as `scheduler serve` builds it) in a
thread, on loopback, over each backend's database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from waitress import wasyncore

from scheduler_core.client import Client
from scheduler_core.serving import create_server
from scheduler_core.settings import Settings
from tests.api.conftest import unreachable_database  # noqa: F401 - a fixture, shared

API_KEY = "test-key-7f3a9c"


@contextmanager
def waitress_thread(app: Flask, settings: Settings) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 with an OS-chosen port; yields its base URL."""
    server: Any = create_server(app, settings, "127.0.0.1", 0, threads=4, ident="test")
    socket_map = server._map
    stopped = threading.Event()

    def run() -> None:  # server.run(), in steps, so that the test can end it
        while not stopped.is_set():
            wasyncore.loop(timeout=0.05, map=socket_map, count=1, use_poll=True)

    thread = threading.Thread(target=run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopped.set()
        thread.join(5)
        for channel in list(socket_map.values()):
            channel.close()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


@pytest.fixture
def base_url(app: Flask, settings: Settings) -> Iterator[str]:
    with waitress_thread(app, settings) as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[Client]:
    with Client(base_url, retries=0) as client:
        yield client
