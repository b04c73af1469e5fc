"""Test support: JetStream on a broker (streams made and read back with nats-py), brokers
of a test's own (nats-server subprocesses), fake brokers that misbehave, and the core's
API as a client sees it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
from flask.testing import FlaskClient
from nats.js.api import RawStreamMsg
from werkzeug.test import TestResponse

from scheduler_core.store import Store

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Stream:
    name: str
    subject: str


class JetStream:
    """A nats-py connection on its own event loop, driven synchronously by the test.
    With `cleanup`, the streams it made are deleted when it closes (on a shared broker)."""

    def __init__(self, url: str, cleanup: bool = False, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._cleanup = cleanup
        self._streams: list[str] = []
        self._nc = self._run(
            nats.connect(url, allow_reconnect=False, max_reconnect_attempts=1, **options)
        )
        self._js = self._nc.jetstream()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(asyncio.wait_for(coroutine, 10))

    def add_stream(self, subject: str | None = None, prefix: str = "scn") -> Stream:
        """A new stream, on a subject no other test uses unless given."""
        unique = uuid.uuid4().hex[:12]
        stream = Stream(f"SCN_{unique}", subject or f"{prefix}.{unique}")
        self._run(self._js.add_stream(name=stream.name, subjects=[stream.subject]))
        self._streams.append(stream.name)
        return stream

    def messages(self, stream: Stream) -> list[RawStreamMsg]:
        info = self._run(self._js.stream_info(stream.name))
        state = info.state
        if not state.messages:
            return []
        return [
            self._run(self._js.get_msg(stream.name, seq))
            for seq in range(state.first_seq, state.last_seq + 1)
        ]

    def close(self) -> None:
        try:
            for name in self._streams if self._cleanup else ():
                self._run(self._js.delete_stream(name))
        except Exception:
            pass  # the test's own broker may be down; its streams go with its tmp dir
        try:
            self._run(self._nc.close())
        finally:
            self._loop.run_until_complete(_cancel_the_rest())
            self._loop.close()


async def _cancel_the_rest() -> None:
    """Cancel what nats-py left running on this loop (subscription tasks, say)."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def wait_for_jetstream(url: str, stream: Stream, timeout: float = 15.0) -> None:
    """Wait until the broker at `url` is up and serves `stream` (after a restart)."""
    until = time.monotonic() + timeout
    while True:
        try:
            admin = JetStream(url)
            try:
                admin._run(admin._js.stream_info(stream.name))
                return
            finally:
                admin.close()
        except Exception:
            if time.monotonic() > until:
                raise
            time.sleep(0.1)


class NatsServer:
    """A nats-server with JetStream on 127.0.0.1:`port`, storing in `store_dir`."""

    def __init__(self, binary: str, port: int, store_dir: Path) -> None:
        self.binary = binary
        self.port = port
        self.store_dir = store_dir
        self.args: tuple[str, ...] = ()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, userinfo: str = "") -> str:
        return f"nats://{userinfo + '@' if userinfo else ''}{self.address}"

    def config(self, text: str) -> None:
        """Start with this configuration file (the command line still sets address, port
        and store)."""
        path = self.store_dir.parent / "nats.conf"
        path.write_text(text)
        self.args = ("-c", str(path))

    def start(self, *args: str) -> NatsServer:
        if args:
            self.args = args
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = (self.store_dir.parent / "nats-server.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, *self.args, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
            + ["-sd", str(self.store_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        until = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"nats-server did not start on {self.address}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._accepted.append(conn)

    @property
    def connections(self) -> int:
        return len(self._accepted)

    def close(self) -> None:
        self._sock.close()
        for conn in self._accepted:
            conn.close()


INFO = (
    b'INFO {"server_id":"FAKE","server_name":"fake","version":"2.9.10","proto":1,'
    b'"headers":true,"max_payload":1048576,"jetstream":true}\r\n'
)


class MuteBroker:
    """Speaks the NATS handshake (INFO, PONG) and takes messages, but never answers one:
    a JetStream whose PubAck never comes. Records when each message arrived."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.published: list[tuple[str, float]] = []  # (subject, time.monotonic())
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            conn.sendall(INFO)
            while line := reader.readline():
                op, *args = line.split()
                if op == b"PING":
                    conn.sendall(b"PONG\r\n")
                elif op in (b"PUB", b"HPUB"):
                    self.published.append((args[0].decode(), time.monotonic()))
                    reader.read(int(args[-1]) + 2)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a broker. Armed with `cut_next_publish`, it
    takes the next message a client publishes (passing it on to the broker or not), then
    cuts that connection before the broker's answer gets back: a kept connection that
    dies under a publish."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._armed: bool | None = None  # None: pass everything; else: forward the cut one?
        self._lock = threading.Lock()
        self.connections = 0
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next_publish(self, forward: bool) -> None:
        with self._lock:
            self._armed = forward

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self._upstream))
            muted = threading.Event()
            threading.Thread(
                target=self._pipe, args=(server, client, muted, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(client, server, muted, True), daemon=True
            ).start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, muted: threading.Event, upward: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if upward and b"HPUB" in data:
                    with self._lock:
                        forward, self._armed = self._armed, None
                    if forward is not None:
                        muted.set()  # nothing more reaches the client
                        if forward:
                            sink.sendall(data)
                            time.sleep(0.3)  # the broker stores it and answers, unheard
                        self.cuts += 1
                        break
                if not (muted.is_set() and not upward):
                    sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._sock.close()


# -- the core's API, as a client sees it ------------------------------------------------


def set_config(store: Store, **columns: int) -> None:
    store.update_config(columns)


def enqueue(client: FlaskClient, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"webhookUrl": url, **fields})
    return _json(response, 201)


def task(client: FlaskClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/tasks/{task_id}")
    return _json(response, 200)


def attempts(client: FlaskClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/tasks/{task_id}/attempts")
    rows: list[dict[str, Any]] = _json(response, 200)["attempts"]
    return rows


def _json(response: TestResponse, status: int) -> dict[str, Any]:
    body = response.json
    assert response.status_code == status, body
    assert isinstance(body, dict)
    return body
