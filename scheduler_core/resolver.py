"""Name resolution and connecting, within an attempt's deadline, in one place.

`socket.getaddrinfo` blocks and cannot be cancelled: a stalled DNS server would hold the
calling thread for as long as the resolver library likes, after which the request would go
out for an attempt the core already recorded as timed out. Here lookups run on their own
daemon threads; the caller waits for the answer at most until its deadline, then gives up,
and the late answer connects nothing. Concurrent lookups of one name share one call.

The connection then goes to an address this module returned: a later target policy checks
and pins exactly these addresses (TLS still verifies the name).
"""

from __future__ import annotations

import functools
import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

MAX_LOOKUP_THREADS = 32  # distinct names resolved at once; more wait their turn


class ResolutionError(OSError):
    """The name does not resolve (`message` is the resolver's reason)."""


class ResolutionTimeout(TimeoutError):
    """The deadline passed before the name resolved."""


class ConnectTimeout(TimeoutError):
    """The deadline passed before a connection was established."""


@dataclass(frozen=True)
class Address:
    """One address a name resolved to, ready for `socket.socket(...).connect(sockaddr)`."""

    family: int
    type: int
    proto: int
    sockaddr: tuple[object, ...]

    @property
    def ip(self) -> str:
        return str(self.sockaddr[0])


class Resolver:
    """getaddrinfo on a small pool of daemon threads, bounded by the caller's deadline."""

    def __init__(
        self, lookup: Callable[..., list[tuple]] | None = None, threads: int = MAX_LOOKUP_THREADS
    ):
        # `lookup` defaults to socket.getaddrinfo, read at call time so a process-wide
        # replacement (a test's slow resolver, say) is honoured.
        self._lookup = lookup
        self._max_threads = threads
        self._jobs: queue.SimpleQueue[tuple[Future[list[Address]], str, int]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, int], Future[list[Address]]] = {}
        self._threads = 0
        self._idle = 0

    def resolve(self, host: str, port: int, deadline: float) -> list[Address]:
        """Every address of `host` (a name or a literal IP) for a TCP connection to `port`.

        `deadline` is a time.monotonic() value. Raises ResolutionTimeout once it passes,
        ResolutionError when the name does not resolve.
        """
        literal = _literal(host, port)
        if literal is not None:
            return [literal]
        key = (host.lower(), port)
        with self._lock:
            future = self._in_flight.get(key)
            if future is None:
                future = Future()
                self._in_flight[key] = future
                future.add_done_callback(functools.partial(self._forget, key))
                self._jobs.put((future, host, port))
                # Each job has a thread of its own, so one stalled name never holds up
                # another; past the cap, jobs wait for the first thread to come free.
                if self._idle > 0:
                    self._idle -= 1
                elif self._threads < self._max_threads:
                    self._threads += 1
                    threading.Thread(target=self._work, name="resolve", daemon=True).start()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ResolutionTimeout(host)
        try:
            return future.result(timeout=remaining)
        except FutureTimeout:
            raise ResolutionTimeout(host) from None

    def _forget(self, key: tuple[str, int], _done: Future[list[Address]]) -> None:
        with self._lock:
            self._in_flight.pop(key, None)

    def _work(self) -> None:
        while True:
            future, host, port = self._jobs.get()
            lookup = self._lookup or socket.getaddrinfo
            try:
                infos = lookup(host, port, type=socket.SOCK_STREAM)
                future.set_result([Address(f, t, p, tuple(sa)) for f, t, p, _, sa in infos])
            except OSError as exc:  # socket.gaierror and friends
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                future.set_exception(ResolutionError(f"cannot resolve {host}: {reason}"))
            except Exception as exc:  # a broken replacement must not kill the thread
                future.set_exception(ResolutionError(f"cannot resolve {host}: {exc!r}"))
            with self._lock:
                self._idle += 1


def _literal(host: str, port: int) -> Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.version == 6:
        return Address(
            socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, (str(ip), port, 0, 0)
        )
    return Address(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, (str(ip), port))


def connect(
    addresses: Sequence[Address],
    deadline: float,
    socket_options: Sequence[tuple[int, int, int | bytes]] = (),
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """A TCP connection to the first of `addresses` that accepts, before `deadline`.

    Raises ConnectTimeout when the deadline passes first, else the last connection error.
    """
    last_error: OSError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(address.family, address.type, address.proto)
        try:
            for level, option, value in socket_options:
                sock.setsockopt(level, option, value)
            sock.settimeout(remaining)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(address.sockaddr)
            return sock
        except TimeoutError:
            sock.close()
            raise ConnectTimeout(address.ip) from None
        except OSError as exc:
            sock.close()
            last_error = exc
    if last_error is not None and time.monotonic() < deadline:
        raise last_error
    raise ConnectTimeout(addresses[0].ip if addresses else "")


default_resolver = Resolver()
