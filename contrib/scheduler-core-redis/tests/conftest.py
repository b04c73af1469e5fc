"""Fixtures: the core's real API and dispatcher with this plugin registered, on a SQLite
database of each test's own; the shared Redis at 127.0.0.1:6379; Redis servers of the
test's own (for down/up, passwords and TLS) on free ports; silent or slow fake servers.

The shared Redis must be running (`redis-server` on 127.0.0.1:6379). When it is not,
the tests that need it are skipped with a warning, except under CI=true, where that
fails the run. The same goes for the `redis-server` binary the own-server tests start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from scheduler_core import targets
from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store, open_store

import scheduler_core_redis

SHARED_HOST = "127.0.0.1"
SHARED_PORT = 6379
REDIS_SERVER = shutil.which("redis-server")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(message: str) -> None:
    if _in_ci():
        pytest.fail(f"{message} (CI=true: the Redis tests must run)", pytrace=False)
    pytest.skip(message)


# -- the core, with this plugin ---------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'scheduler.db'}"
    store = open_store(url, pool_size=1)
    store.migrate()
    store.close()
    return url


@pytest.fixture
def signing_secrets() -> tuple[str, ...]:
    return ()


@pytest.fixture
def settings(database_url: str, signing_secrets: tuple[str, ...]) -> Settings:
    return Settings(
        database_url=database_url, load_entry_points=False, signing_secrets=signing_secrets
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.database_url, pool_size=4)
    yield store
    store.close()


@pytest.fixture
def plugins(settings: Settings) -> PluginManager:
    return PluginManager(settings, extra_plugins=(scheduler_core_redis,))


@pytest.fixture
def app(settings: Settings, store: Store, plugins: PluginManager) -> Flask:
    return create_app(settings, store=store, plugins=plugins, test_config={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def dispatcher(store: Store, plugins: PluginManager) -> Iterator[Dispatcher]:
    """A dispatcher that is not started: `tick()` runs one cycle now."""
    dispatcher = Dispatcher(store, plugins)
    yield dispatcher
    dispatcher.stop(wait=True)


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """No test leaves its target policy or kept connections to the next."""
    yield
    targets.set_policy(targets.TargetPolicy())
    scheduler_core_redis.close_idle_connections()


def enqueue(client: FlaskClient, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"webhookUrl": url, **fields})
    assert response.status_code == 201, response.json
    task: dict[str, Any] = response.get_json()
    return task


def get_task(client: FlaskClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.json
    task: dict[str, Any] = response.get_json()
    return task


def get_attempts(client: FlaskClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.json
    rows: list[dict[str, Any]] = response.get_json()["attempts"]
    return rows


# -- the shared Redis -------------------------------------------------------------------


@pytest.fixture(scope="session")
def _shared_redis_up() -> bool:
    try:
        redis.Redis(host=SHARED_HOST, port=SHARED_PORT, socket_timeout=2).ping()
    except redis.RedisError:
        return False
    return True


@pytest.fixture
def shared_redis(_shared_redis_up: bool) -> Iterator[redis.Redis]:
    """A client of the shared Redis, db 0."""
    if not _shared_redis_up:
        _unavailable(f"Redis is not reachable at {SHARED_HOST}:{SHARED_PORT}")
    client = redis.Redis(host=SHARED_HOST, port=SHARED_PORT, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def key(shared_redis: redis.Redis) -> Iterator[str]:
    """A stream or channel name of this test's own, deleted (in db 0..3) afterwards."""
    name = f"scheduler-core-redis-test:{uuid.uuid4().hex}"
    yield name
    for db in range(4):
        client = redis.Redis(host=SHARED_HOST, port=SHARED_PORT, db=db, socket_timeout=5)
        client.delete(name)
        client.close()


# -- Redis servers of the test's own ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A redis-server subprocess this test owns, stopped and started on the same port."""

    port: int
    workdir: Path
    extra: tuple[str, ...] = ()
    tls: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        port_args = (
            ["--port", "0", "--tls-port", str(self.port)]
            if self.tls
            else ["--port", str(self.port)]
        )
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *port_args,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / f"redis-{self.port}.log"),
                *self.extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        assert self.process is not None
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                log = self.workdir / f"redis-{self.port}.log"
                raise RuntimeError(f"redis-server exited: {log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-server subprocesses of this test's own: `redis_server(*extra_args)`."""
    if REDIS_SERVER is None:
        _unavailable("redis-server is not installed")
    started: list[RedisServer] = []

    def start(*extra: str, tls: bool = False) -> RedisServer:
        server = RedisServer(free_port(), tmp_path, extra=extra, tls=tls)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


# -- fake servers: accept TCP, then answer slowly or never --------------------------------


@dataclass
class FakeRedis:
    """A TCP server on 127.0.0.1 that speaks just enough RESP to hold a client up.

    mode "silent": reads everything, never answers. "hang": answers +OK to every command
    but XADD/PUBLISH, which it never answers. "trickle": the same, but it answers XADD one
    byte every `trickle_s`. Every command it reads is noted with its time.monotonic().
    """

    mode: str = "silent"
    trickle_s: float = 0.1
    commands: list[tuple[float, list[bytes]]] = field(default_factory=list)
    received: list[tuple[float, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                self.received.append((time.monotonic(), data))
                buffer += data
                while True:
                    parsed = _parse_command(buffer)
                    if parsed is None:
                        break
                    command, buffer = parsed
                    self.commands.append((time.monotonic(), command))
                    self._answer(conn, command)

    def _answer(self, conn: socket.socket, command: list[bytes]) -> None:
        if self.mode == "silent":
            return
        if command[0].upper() not in (b"XADD", b"PUBLISH"):
            conn.sendall(b"+OK\r\n")
            return
        if self.mode == "trickle":
            for byte in b"$15\r\n1700000000000-0\r\n":
                if self._stop.wait(self.trickle_s):
                    return
                conn.sendall(bytes([byte]))

    def names(self) -> list[bytes]:
        return [command[0].upper() for _, command in self.commands]

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


def _parse_command(buffer: bytes) -> tuple[list[bytes], bytes] | None:
    """One RESP array of bulk strings from the start of `buffer`, and the rest."""
    if not buffer.startswith(b"*"):
        return None
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    count, at = int(buffer[1:end]), end + 2
    items = []
    for _ in range(count):
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return None
        size = int(buffer[at + 1 : end])
        start = end + 2
        if len(buffer) < start + size + 2:
            return None
        items.append(buffer[start : start + size])
        at = start + size + 2
    return items, buffer[at:]


@pytest.fixture
def fake_redis() -> Iterator[Callable[..., FakeRedis]]:
    made: list[FakeRedis] = []

    def make(mode: str = "silent", **options: Any) -> FakeRedis:
        server = FakeRedis(mode, **options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()
