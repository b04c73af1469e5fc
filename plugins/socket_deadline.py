"""Total deadlines for blocking sockets.

Socket timeouts apply per operation, so a receiver that trickles one byte every half
second never trips them. A single watchdog thread shuts down every registered socket
whose deadline has passed; the blocked read then fails at once.

Wrapping a socket for TLS detaches it (its fileno becomes -1), so a socket that is about
to be wrapped is watched through a duplicate descriptor: shutting the duplicate down
shuts the connection down, and the TLS handshake is bounded by the deadline too.
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
        # token -> (socket, owned): an owned socket is a duplicate the watchdog closes
        self._live: dict[int, tuple[socket.socket, bool]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float, owned: bool = False) -> int:
        """Shut `sock` down at `deadline` (time.monotonic()) unless released first.

        An `owned` socket is closed by the watchdog once released or shut down.
        """
        with self._cond:
            token = next(self._tokens)
            self._live[token] = (sock, owned)
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
            entry = self._live.pop(token, None)
            if entry is not None and entry[1]:
                entry[0].close()

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
                entry = self._live.pop(token, None)
                if entry is None:
                    continue
                # Under the lock: release() cannot close an owned socket meanwhile.
                sock, owned = entry
                with contextlib.suppress(OSError):  # already closed by its owner
                    sock.shutdown(socket.SHUT_RDWR)
                if owned:
                    sock.close()


_local = threading.local()


class DeadlineExceeded(TimeoutError):
    """The attempt's deadline passed before a byte could be sent."""


class DeadlineScope:
    """Within the scope, every socket the current thread registers obeys `deadline`.

    The scope also notes how far the attempt got (`step`, for the error message), when
    its first byte was sent (`sent_at`), and a clean description of a failure that the
    HTTP stack would wrap in layers of its own (`failure`).
    """

    def __init__(self, watchdog: SocketWatchdog, deadline: float):
        self.watchdog = watchdog
        self.deadline = deadline
        self.step = "start"
        self.reused = False  # the request went out on a kept-alive connection
        self.sent_at: float | None = None
        self.failure: str | None = None
        self._tokens: dict[int, int] = {}

    def before_send(self) -> None:
        """Called before each write: no byte leaves after the deadline."""
        now = time.monotonic()
        if now >= self.deadline:
            raise DeadlineExceeded("the deadline passed before the request was sent")
        if self.sent_at is None:
            self.sent_at = now

    def __enter__(self) -> DeadlineScope:
        _local.scope = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.scope = None
        for token in self._tokens.values():
            self.watchdog.release(token)

    def register(self, sock: socket.socket, owned: bool = False) -> None:
        if id(sock) not in self._tokens:
            self._tokens[id(sock)] = self.watchdog.watch(sock, self.deadline, owned)


def current_scope() -> DeadlineScope | None:
    scope: DeadlineScope | None = getattr(_local, "scope", None)
    return scope


def register_current(sock: socket.socket | None, before_tls: bool = False) -> None:
    """Put `sock` under the current thread's deadline, if a scope is open.

    `before_tls`: `sock` is about to be wrapped for TLS, which detaches it; watch a
    duplicate instead, closed when the scope ends.
    """
    scope: DeadlineScope | None = getattr(_local, "scope", None)
    if scope is not None and sock is not None:
        if before_tls:
            scope.register(sock.dup(), owned=True)
        else:
            scope.register(sock)
