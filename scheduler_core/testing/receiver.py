"""A real HTTP receiver on 127.0.0.1 that records every callback and answers as told."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from scheduler_core.testing.waiting import wait_until


@dataclass
class Received:
    """One request the receiver got: its path (with the query), headers as sent, the raw
    body, and ``time.monotonic()`` when its request line arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        """The body parsed as JSON (a callback's envelope); ValueError if it is not JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header's value, its name matched without regard to case; None if absent."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Behaviour:
    """How the receiver answers one path. Statuses are used in turn, the last repeating."""

    statuses: list[int] = field(default_factory=lambda: [200])
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before the status line
    trickle_every: float | None = None  # send the body one byte at a time this far apart
    trickle_bytes: int = 0
    hang: bool = False  # never answer (until the client gives up, or close())


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port) that records every POST and answers 200
    ``ok`` unless told otherwise with `behave`. Use it as a context manager, or `close()`
    it; it serves from a daemon thread, one thread per connection.

    ::

        with Receiver() as receiver:
            receiver.behave("/flaky", statuses=[503, 200], headers={"Retry-After": "0"})
            ... enqueue receiver.url("/flaky") and deliver ...
            [first, second] = receiver.wait_for(2, "/flaky")
            assert first.json()["taskId"] == second.json()["taskId"]
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._behaviours: dict[str, Behaviour] = {}
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # The answer goes out in two writes (head, body): without this, Nagle holds
                # the body back for the client's delayed ACK, 40 ms a callback on a reused
                # connection.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path
                with receiver._lock:
                    receiver.received.append(
                        Received(path, dict(self.headers.items()), body, arrived)
                    )
                    behaviour = receiver._behaviours.get(path.split("?")[0], Behaviour())
                    index = receiver._served.get(path, 0)
                    receiver._served[path] = index + 1
                receiver._answer(self, behaviour, index)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # socketserver's default backlog of 5 resets connections under a burst.
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _answer(self, handler: BaseHTTPRequestHandler, b: Behaviour, index: int) -> None:
        try:
            if b.hang:
                self._release.wait(60)
                return
            if b.delay:
                time.sleep(b.delay)
            status = b.statuses[min(index, len(b.statuses) - 1)]
            handler.send_response(status)
            for key, value in b.headers.items():
                handler.send_header(key, value)
            if b.trickle_every is not None:
                handler.send_header("Content-Length", str(b.trickle_bytes))
                handler.end_headers()
                for _ in range(b.trickle_bytes):
                    handler.wfile.write(b"x")
                    handler.wfile.flush()
                    time.sleep(b.trickle_every)
                return
            handler.send_header("Content-Length", str(len(b.body)))
            handler.end_headers()
            handler.wfile.write(b.body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, OSError):
            pass  # the scheduler gave up on us, as it should

    def url(self, path: str = "/hook") -> str:
        """An http:// URL of this receiver with `path` (which may carry a query)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def behave(self, path: str, **kwargs: Any) -> None:
        """Answer requests to `path` (the query ignored) as `Behaviour(**kwargs)` says,
        from the next request on; TypeError for an unknown keyword."""
        with self._lock:
            self._behaviours[path] = Behaviour(**kwargs)

    def calls(self, path: str | None = None) -> list[Received]:
        """The requests received so far, oldest first; only those to `path` (compared
        with the query) when given."""
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 15.0
    ) -> list[Received]:
        """Wait until at least `count` requests (to `path`, when given) arrived and return
        them all; AssertionError after `timeout` seconds."""
        wait_until(
            lambda: len(self.calls(path)) >= count,
            timeout,
            message=f"waiting for {count} calls to {path or 'any path'}",
        )
        return self.calls(path)

    def close(self) -> None:
        """Stop serving; requests told to hang are let go. Safe to call twice."""
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
