"""Total deadlines for blocking sockets.

Socket timeouts apply per operation, so a receiver that trickles one byte every half
second never trips them. A single watchdog thread shuts down every registered socket
whose deadline has passed; the blocked read then fails at once.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time


class SocketWatchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, socket.socket] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        """Shut `sock` down at `deadline` (time.monotonic()) unless released first."""
        with self._cond:
            token = next(self._tokens)
            self._live[token] = sock
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="socket-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()
            return token

    def release(self, token: int) -> None:
        with self._cond:
            self._live.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                sock = self._live.pop(token, None)
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed by its owner
                    sock.shutdown(socket.SHUT_RDWR)


_local = threading.local()


class DeadlineScope:
    """Within the scope, every socket the current thread registers obeys `deadline`."""

    def __init__(self, watchdog: SocketWatchdog, deadline: float):
        self.watchdog = watchdog
        self.deadline = deadline
        self._tokens: dict[int, int] = {}

    def __enter__(self) -> DeadlineScope:
        _local.scope = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.scope = None
        for token in self._tokens.values():
            self.watchdog.release(token)

    def register(self, sock: socket.socket) -> None:
        if id(sock) not in self._tokens:
            self._tokens[id(sock)] = self.watchdog.watch(sock, self.deadline)


def register_current(sock: socket.socket | None) -> None:
    """Put `sock` under the current thread's deadline, if a scope is open."""
    scope: DeadlineScope | None = getattr(_local, "scope", None)
    if scope is not None and sock is not None:
        scope.register(sock)
