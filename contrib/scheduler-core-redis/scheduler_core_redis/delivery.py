"""The core's callback as a Redis stream entry (XADD) or a channel message (PUBLISH).

The attempt's deadline bounds everything, as in the core's HTTP delivery: the name is
resolved through ``scheduler_core.resolver`` (on its own threads, never past the
deadline), every address it returned is checked with
``scheduler_core.targets.refusal_at_connect``, and the connection goes to those checked
addresses and no others (for ``rediss://``, TLS still verifies the URL's host name). Socket
timeouts are the time left, a watchdog shuts the connection down at the deadline (so a
server that trickles its answer cannot stretch the attempt), and no command is written
once the deadline has passed.

Connections are kept between attempts in a small pool per target (server, database and
credentials). What happened is reported as raw facts (``DeliveryReport``); the core
judges them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from scheduler_core.models import DeliveryReport
from scheduler_core.plugins.socket_deadline import SocketWatchdog
from scheduler_core.resolver import ResolutionError, connect, default_resolver
from scheduler_core.targets import refusal_at_connect

from scheduler_core_redis.target import InvalidRedisURL, RedisTarget, parse_target

if TYPE_CHECKING:
    from scheduler_core.models import Callback

# A CA bundle (PEM file) to verify rediss:// servers with, instead of the system's.
CA_CERTS_ENV = "SCHEDULER_REDIS_CA_CERTS"

# Idle connections kept per target (as many as the dispatcher's delivery threads, so a
# busy target does not churn), targets kept, idle connections kept in all, and how long
# an idle one is kept.
POOL_PER_TARGET = 64
POOL_TARGETS = 256
POOL_TOTAL = 512
POOL_IDLE_S = 60.0

# What the attempt was doing when its deadline passed, as the error will say it.
TIMEOUT_STEPS = {
    "start": "the attempt did not start",
    "name resolution": "name resolution did not finish",
    "connect": "could not connect to Redis",
    "tls handshake": "the TLS handshake did not finish",
    "redis handshake": "Redis did not answer the connection handshake",
    "send": "could not send the message",
    "response": "no answer from Redis to the command",
}

_SOCKET_OPTIONS: tuple[tuple[int, int, int], ...] = (
    (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
)

_watchdog = SocketWatchdog()


class DeadlineExceeded(TimeoutError):
    """The attempt's deadline passed before a command could be written."""


class _Attempt:
    """One attempt's deadline and progress, seen by the connection it uses."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.step = "start"
        self.failure: str | None = None  # a clean reason found below redis-py's wrappers
        self.sent_at: float | None = None
        self._tokens: list[int] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def time_left(self) -> float:
        """Seconds left before the deadline; DeadlineExceeded when none are."""
        left = self.left()
        if left <= 0:
            raise DeadlineExceeded(self.step)
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock`'s connection down at the deadline, through a duplicate descriptor
        (a TLS socket cannot be duplicated, and wrapping a plain one detaches it)."""
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        self._tokens.append(_watchdog.watch(duplicate, self.deadline, owned=True))

    def close(self) -> None:
        for token in self._tokens:
            _watchdog.release(token)
        self._tokens.clear()


def _step(attempt: _Attempt | None, step: str) -> None:
    if attempt is not None:
        attempt.step = step


class _PinnedConnection(Connection):
    """A redis-py connection that resolves, checks and connects the way the core's HTTP
    delivery does, within the current attempt's deadline, and writes no command after it.
    """

    attempt: _Attempt | None = None

    def _connect(self) -> socket.socket:
        sock = _pinned_socket(self.host, self.port, self.attempt, self.socket_connect_timeout)
        tls = isinstance(self, SSLConnection)
        _step(self.attempt, "tls handshake" if tls else "redis handshake")
        return sock

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self.attempt is not None:
            self.attempt.time_left()  # no byte is written after the deadline
        super().send_packed_command(command, check_health)


class _PinnedSSLConnection(SSLConnection, _PinnedConnection):
    """rediss://: SSLConnection wraps the pinned socket, verifying the URL's host name."""

    def _connect(self) -> socket.socket:
        sock: socket.socket = super()._connect()
        _step(self.attempt, "redis handshake")
        return sock


def _pinned_socket(
    host: str, port: int, attempt: _Attempt | None, timeout: float | None
) -> socket.socket:
    deadline = attempt.deadline if attempt else time.monotonic() + float(timeout or 30.0)
    _step(attempt, "name resolution")
    try:
        addresses = default_resolver.resolve(host, port, deadline)
    except ResolutionError as exc:
        if attempt is not None:
            attempt.failure = f"dns error: {exc}"
        raise
    # Every address is checked and the connection goes to these and no others, so a name
    # that resolves elsewhere later (DNS rebinding) cannot pass.
    refusal = refusal_at_connect(host, [a.ip for a in addresses])
    if refusal is not None:
        if attempt is not None:
            attempt.failure = f"target refused: {refusal}"
        raise OSError("target refused by the target policy")
    _step(attempt, "connect")
    sock = connect(addresses, deadline, _SOCKET_OPTIONS)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    if attempt is not None:
        attempt.watch(sock)  # the TLS handshake and the redis handshake are bounded too
    return sock


def _socket_of(conn: Connection) -> socket.socket | None:
    sock: socket.socket | None = getattr(conn, "_sock", None)
    return sock


# -- the pool -------------------------------------------------------------------------


class ConnectionPool:
    """Idle connections per target, thread-safe. A connection is used by one attempt at a
    time: taken out, used, given back when it is known to be in step, else closed."""

    def __init__(
        self,
        per_target: int = POOL_PER_TARGET,
        targets: int = POOL_TARGETS,
        total: int = POOL_TOTAL,
        idle_s: float = POOL_IDLE_S,
    ) -> None:
        self._per_target = per_target
        self._targets = targets
        self._total = max(total, per_target)
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._count = 0
        # key -> idle connections with the time each was given back, oldest first; the
        # keys in least recently used order
        self._idle: OrderedDict[tuple[object, ...], list[tuple[_PinnedConnection, float]]]
        self._idle = OrderedDict()

    def take(self, key: tuple[object, ...]) -> _PinnedConnection | None:
        """The most recently used idle connection of `key`, or None."""
        expired: list[_PinnedConnection] = []
        found: _PinnedConnection | None = None
        now = time.monotonic()
        with self._lock:
            stack = self._idle.get(key)
            while stack:
                conn, since = stack.pop()
                self._count -= 1
                if now - since > self._idle_s:
                    expired.append(conn)
                    continue
                found = conn
                break
            if stack is not None and not stack:
                del self._idle[key]
        _close(expired)
        return found

    def give(self, key: tuple[object, ...], conn: _PinnedConnection) -> None:
        """Keep `conn` (in step with its server) for the next attempt to `key`."""
        closing: list[_PinnedConnection] = []
        now = time.monotonic()
        with self._lock:
            stack = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            while stack and now - stack[0][1] > self._idle_s:
                closing.append(stack.pop(0)[0])
                self._count -= 1
            if len(stack) < self._per_target:
                stack.append((conn, now))
                self._count += 1
            else:
                closing.append(conn)
            # Over a limit: let go of the least recently used targets' connections.
            while len(self._idle) > self._targets or self._count > self._total:
                _, old = self._idle.popitem(last=False)
                self._count -= len(old)
                closing += [c for c, _ in old]
        _close(closing)

    def idle(self, key: tuple[object, ...] | None = None) -> int:
        """How many idle connections are kept (for `key`, or in all)."""
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, ()))
            return sum(len(stack) for stack in self._idle.values())

    def clear(self) -> None:
        with self._lock:
            closing = [c for stack in self._idle.values() for c, _ in stack]
            self._idle.clear()
            self._count = 0
        _close(closing)


def _close(connections: list[_PinnedConnection]) -> None:
    for conn in connections:
        with contextlib.suppress(Exception):  # closing a dead connection may fail: it is gone
            conn.disconnect()


pool = ConnectionPool()


def close_idle_connections() -> None:
    """Close every kept connection (for tests, and a process that wants to let go)."""
    pool.clear()


def _new_connection(target: RedisTarget, left: float) -> _PinnedConnection:
    options: dict[str, Any] = {
        "host": target.host,
        "port": target.port,
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": left,
        "socket_connect_timeout": left,
        "retry": Retry(NoBackoff(), 0),  # one attempt is one try; the core retries
        "health_check_interval": 0,
        # RESP2: the replies to XADD and PUBLISH are the same, and servers before 6.0
        # (no HELLO) are served too.
        "protocol": 2,
    }
    if target.tls:
        return _PinnedSSLConnection(
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            ssl_ca_certs=os.environ.get(CA_CERTS_ENV) or None,
            **options,
        )
    return _PinnedConnection(**options)


def _usable(conn: _PinnedConnection) -> bool:
    """An idle connection is usable when it is open and has nothing to read: no EOF (the
    server closed it, or went away) and no stray reply."""
    if _socket_of(conn) is None:
        return False
    try:
        return not conn.can_read(timeout=0)
    except (RedisError, OSError):
        return False


# -- one attempt ----------------------------------------------------------------------

# A kept connection that the server closed while it was idle fails before any answer:
# the command goes again, on a fresh connection, this many times at most (at-least-once
# delivery allows the repeat, and the deadline still bounds it).
STALE_CONNECTION_RETRIES = 1


def deliver(callback: Callback, deadline: float) -> DeliveryReport:
    """XADD or PUBLISH `callback` as its URL says, all before `deadline`
    (time.monotonic()); never raises."""
    try:
        target = parse_target(callback.url)
    except InvalidRedisURL as exc:
        return DeliveryReport.failed(f"invalid redis url: {exc}")
    attempt = _Attempt(deadline)
    try:
        if attempt.left() <= 0:
            return DeliveryReport.failed(TIMEOUT_STEPS["start"], timed_out=True)
        return _deliver(target, callback, attempt)
    except Exception as exc:  # every failure mode is a failed attempt with a reason
        return _failure(exc, attempt, target)
    finally:
        attempt.close()


def command_for(target: RedisTarget, callback: Callback) -> tuple[str | bytes, ...]:
    """The Redis command that carries `callback` to `target`."""
    headers = [(name.lower(), value) for name, value in callback.headers.items()]
    if target.stream is not None:
        args: list[str | bytes] = ["XADD", target.stream]
        if target.maxlen is not None:
            args += ["MAXLEN", "~", str(target.maxlen)]
        args += ["*", "body", callback.body]
        for name, value in headers:
            args += [name, value]
        return tuple(args)
    assert target.channel is not None
    envelope = {"headers": dict(headers), "body": callback.body.decode("utf-8", "replace")}
    return ("PUBLISH", target.channel, json.dumps(envelope, ensure_ascii=False).encode())


def _deliver(target: RedisTarget, callback: Callback, attempt: _Attempt) -> DeliveryReport:
    command = command_for(target, callback)
    key = target.pool_key
    fresh_tries = STALE_CONNECTION_RETRIES
    while True:
        conn = pool.take(key)
        while conn is not None and not _usable(conn):
            _close([conn])
            conn = pool.take(key)
        reused = conn is not None
        if conn is None:
            conn = _new_connection(target, attempt.time_left())
        keep = False
        try:
            reply = _exchange(conn, reused, command, attempt)
            keep = True
        except ResponseError:
            # The server answered the command with an error: the connection is in step.
            keep = attempt.step == "response" and _socket_of(conn) is not None
            raise
        except (RedisConnectionError, OSError) as exc:
            if (
                reused
                and fresh_tries > 0
                and attempt.step in ("send", "response")
                and not isinstance(exc, AuthenticationError)
                and not _timed_out(exc)
                and attempt.left() > 0
            ):
                fresh_tries -= 1
                continue
            raise
        finally:
            conn.attempt = None
            if keep:
                pool.give(key, conn)
            else:
                _close([conn])
        return _report(target, reply, attempt)


def _exchange(
    conn: _PinnedConnection, reused: bool, command: tuple[str | bytes, ...], attempt: _Attempt
) -> Any:
    conn.attempt = attempt
    left = attempt.time_left()
    conn.socket_timeout = left
    conn.socket_connect_timeout = left
    if reused:
        sock = _socket_of(conn)
        assert sock is not None
        attempt.watch(sock)
    else:
        conn.connect()  # resolve, check, connect, TLS, AUTH and SELECT, within the deadline
        sock = _socket_of(conn)
        assert sock is not None
    sock.settimeout(attempt.time_left())
    attempt.step = "send"
    attempt.time_left()
    if attempt.sent_at is None:
        attempt.sent_at = time.monotonic()
    conn.send_command(*command)
    attempt.step = "response"
    return conn.read_response()


def _report(target: RedisTarget, reply: Any, attempt: _Attempt) -> DeliveryReport:
    if target.channel is not None and target.require_subscribers and reply == 0:
        return DeliveryReport.failed(
            "no subscriber received the message (require_subscribers=1)",
            sent_at=attempt.sent_at,
        )
    return DeliveryReport.accepted(sent_at=attempt.sent_at)


# -- what went wrong, in a few words ---------------------------------------------------


def _failure(exc: BaseException, attempt: _Attempt, target: RedisTarget) -> DeliveryReport:
    if attempt.failure is not None:
        return DeliveryReport.failed(scrub(attempt.failure, target), sent_at=attempt.sent_at)
    if _timed_out(exc) or attempt.left() <= 0.01:
        step = TIMEOUT_STEPS.get(attempt.step, TIMEOUT_STEPS["response"])
        return DeliveryReport.failed(step, timed_out=True, sent_at=attempt.sent_at)
    error = describe_error(exc)
    if target.password is None and _NO_AUTH.search(str(exc)):
        # A server that wants a password refuses an unauthenticated client's command as
        # NOAUTH or, for a command of many arguments (an XADD), as a protocol error.
        error = f"redis authentication failed: the server requires a password ({exc})"
    return DeliveryReport.failed(scrub(error, target), sent_at=attempt.sent_at)


_NO_AUTH = re.compile(r"NOAUTH|Authentication required|unauthenticated", re.IGNORECASE)


def error_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors it was raised from or during, outermost first."""
    chain = [exc]
    while len(chain) < 16:
        inner = exc.__cause__ or exc.__context__
        if inner is None or any(inner is seen for seen in chain):
            break
        chain.append(inner)
        exc = inner
    return chain


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(e, RedisTimeoutError | TimeoutError) for e in error_chain(exc))


def describe_error(exc: BaseException) -> str:
    """A failure in a few words: the kind, then what the server or the network said."""
    chain = error_chain(exc)
    tls = _first(chain, ssl.SSLError)
    if tls is not None:
        if isinstance(tls, ssl.SSLCertVerificationError) and tls.verify_message:
            return f"tls error: certificate verify failed: {tls.verify_message}"
        return f"tls error: {tls.reason or tls}"
    if _first(chain, ConnectionRefusedError) is not None:
        return "connection refused"
    if isinstance(exc, AuthenticationError):
        return f"redis authentication failed: {exc}"
    if isinstance(exc, NoPermissionError):
        return f"redis refused the command (ACL): {exc}"
    if isinstance(exc, ResponseError):
        return f"redis error: {exc}"
    if isinstance(exc, RedisConnectionError):
        return f"connection error: {exc}"
    if isinstance(exc, RedisError):
        return f"redis error: {type(exc).__name__}: {exc}"
    root = chain[-1]
    text = f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
    if isinstance(root, OSError):
        return f"connection error: {text}"
    return f"delivery error: {text}"


def _first(chain: list[BaseException], kind: type[BaseException]) -> Any:
    return next((e for e in chain if isinstance(e, kind)), None)


def scrub(text: str, target: RedisTarget) -> str:
    """`text` without the URL's userinfo, password or user name, in any letter case.
    (The core redacts the task's secrets again; this keeps them out of every layer.)"""
    for secret in target.secrets():
        text = re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)
    return text


__all__ = [
    "CA_CERTS_ENV",
    "ConnectionPool",
    "close_idle_connections",
    "command_for",
    "deliver",
    "describe_error",
    "pool",
    "scrub",
]
