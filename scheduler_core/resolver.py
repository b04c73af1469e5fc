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

import ipaddress
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from scheduler_core.targets import TargetError, parse_ipv4

# Names resolved at once, in all and per zone (a name's last two labels). A zone whose name
# server stalls holds MAX_LOOKUPS_PER_ZONE threads at most, so one hostile domain, with as
# many names as it likes, cannot hold up the lookups of every other.
MAX_LOOKUP_THREADS = 256
MAX_LOOKUPS_PER_ZONE = 4


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


@dataclass(eq=False)
class _Lookup:
    host: str
    port: int
    zone: str
    future: Future[list[Address]] = field(default_factory=Future)
    waiters: int = 0


class Resolver:
    """getaddrinfo on daemon threads, bounded by the caller's deadline; concurrent lookups
    of one name share one call, and each zone has a few lookups running at most."""

    def __init__(
        self,
        lookup: Callable[..., list[tuple[Any, ...]]] | None = None,
        threads: int = MAX_LOOKUP_THREADS,
        per_zone: int = MAX_LOOKUPS_PER_ZONE,
    ):
        # `lookup` defaults to socket.getaddrinfo, read at call time so a process-wide
        # replacement (a test's slow resolver, say) is honoured.
        self._lookup = lookup
        self._max_threads = threads
        self._per_zone = per_zone
        self._jobs: queue.SimpleQueue[_Lookup] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, int], _Lookup] = {}
        self._zone_running: dict[str, int] = {}
        self._zone_waiting: dict[str, deque[_Lookup]] = {}
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
            lookup = self._in_flight.get(key)
            if lookup is None:
                lookup = _Lookup(host, port, zone_of(host))
                self._in_flight[key] = lookup
                self._admit(lookup)
            lookup.waiters += 1
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResolutionTimeout(host)
            try:
                return lookup.future.result(timeout=remaining)
            except FutureTimeout:
                raise ResolutionTimeout(host) from None
        finally:
            with self._lock:
                lookup.waiters -= 1

    # -- under the lock ------------------------------------------------------------------

    def _admit(self, lookup: _Lookup) -> None:
        """Run `lookup` now if its zone has room, else queue it behind the zone's others."""
        if self._zone_running.get(lookup.zone, 0) >= self._per_zone:
            self._zone_waiting.setdefault(lookup.zone, deque()).append(lookup)
            return
        self._zone_running[lookup.zone] = self._zone_running.get(lookup.zone, 0) + 1
        self._jobs.put(lookup)
        if self._idle > 0:
            self._idle -= 1  # this job is that thread's
        elif self._threads < self._max_threads:
            self._threads += 1
            threading.Thread(target=self._work, name="resolve", daemon=True).start()

    def _done(self, lookup: _Lookup) -> None:
        self._in_flight.pop((lookup.host.lower(), lookup.port), None)
        running = self._zone_running.get(lookup.zone, 1) - 1
        if running:
            self._zone_running[lookup.zone] = running
        else:
            self._zone_running.pop(lookup.zone, None)
        waiting = self._zone_waiting.get(lookup.zone)
        while waiting:
            queued = waiting.popleft()
            if queued.waiters > 0:
                self._admit(queued)
                break
            # Everyone who wanted this one has given up: do not spend a lookup on it.
            self._in_flight.pop((queued.host.lower(), queued.port), None)
            queued.future.set_exception(ResolutionTimeout(queued.host))
        if waiting is not None and not waiting:
            self._zone_waiting.pop(lookup.zone, None)

    # -- lookup threads ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            lookup = self._jobs.get()
            with self._lock:
                abandoned = lookup.waiters == 0  # waited for a thread longer than anyone else
                if abandoned:
                    self._done(lookup)
                    self._idle += 1
            if abandoned:
                lookup.future.set_exception(ResolutionTimeout(lookup.host))
                continue
            resolve = self._lookup or socket.getaddrinfo
            try:
                infos = resolve(lookup.host, lookup.port, type=socket.SOCK_STREAM)
                addresses = [Address(f, t, p, tuple(sa)) for f, t, p, _, sa in infos]
                error: BaseException | None = None
            except OSError as exc:  # socket.gaierror and friends
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                error = ResolutionError(f"cannot resolve {lookup.host}: {reason}")
            except Exception as exc:  # a broken replacement must not kill the thread
                error = ResolutionError(f"cannot resolve {lookup.host}: {exc!r}")
            with self._lock:
                self._done(lookup)
                self._idle += 1
            if error is None:
                lookup.future.set_result(addresses)
            else:
                lookup.future.set_exception(error)


def zone_of(host: str) -> str:
    """The last two labels of a name (`a.b.example.com` -> `example.com`): a stand-in for
    the zone whose name servers answer for it."""
    return ".".join(host.rstrip(".").lower().split(".")[-2:])


def _literal(host: str, port: int) -> Address | None:
    """`host` as an address when it is one, in any spelling the target policy reads as
    one (`127.1`, `0x7f000001`, a trailing dot): the address checked is the one called."""
    text = host.strip("[]")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(text)
    except ValueError:
        try:
            ip = parse_ipv4(text)
        except TargetError:
            return None
    if ip is None:
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
