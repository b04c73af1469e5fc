"""JetStream publishes from the dispatcher's plain threads, on one asyncio loop.

nats-py is asyncio; the dispatcher calls `scheduler_deliver` from up to its delivery
threads at once. A `Publisher` owns one event loop on a daemon thread and the connections
it keeps, one per broker and identity (host, port, credentials), reused between attempts
and made again once closed. A calling thread hands its publish to the loop
(`asyncio.run_coroutine_threadsafe`) and waits at most until the attempt's deadline.

The deadline bounds every step: name resolution (``scheduler_core.resolver``, on the
calling thread, never on the loop), connecting (to an address the target policy checked,
and to no other: nats-py's reconnecting and server discovery are off, so a connection that
drops is closed, not silently moved elsewhere), the handshake, the publish and its PubAck.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import PubAck

from scheduler_core.models import DeliveryReport
from scheduler_core.redaction import redact, scrub
from scheduler_core.resolver import Address, ResolutionError, ResolutionTimeout, default_resolver
from scheduler_core.targets import refusal_at_connect
from scheduler_core_nats.target import NatsTarget

log = logging.getLogger(__name__)

# Brokers (and identities) kept connected at once; beyond it the least recently used idle
# connection is closed.
MAX_CONNECTIONS = 64
# A deadline that passes this close to a failure makes the failure a timeout.
DEADLINE_SLACK_S = 0.05
CONNECTION_NAME = "scheduler-core-nats"
# How often a publish waiting for its PubAck checks that its connection is still open.
CLOSED_POLL_S = 0.1
FIRST = asyncio.FIRST_COMPLETED

# What the attempt was doing when its deadline passed, as lastError will say it.
TIMEOUT_STEPS = {
    "start": "the attempt did not start",
    "name resolution": "name resolution did not finish",
    "connect": "could not connect to the broker",
    "publish": "no PubAck from JetStream",
}


@dataclass(frozen=True)
class Message:
    """What one attempt publishes: the callback's body and headers, unchanged, plus
    Nats-Msg-Id for JetStream's de-duplication."""

    subject: str
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    stream: str | None = None

    def size(self) -> int:
        """Bytes the broker counts against max_payload: the header block and the body."""
        block = len(b"NATS/1.0\r\n\r\n")
        for key, value in self.headers.items():
            block += len(key.encode()) + 4 + len(value.encode())
        return block + len(self.body)


@dataclass
class _Progress:
    """Shared by the calling thread and the loop: the step the attempt is at, and when
    the first byte of the message went out."""

    step: str = "start"
    sent_at: float | None = None


class _NeedAddresses(Exception):
    """No live connection to the target: the caller resolves its name and asks again."""


class _ConnectionLost(Exception):
    """The connection closed while the publish waited for its PubAck."""


class _PublishDenied(Exception):
    """The broker answered the publish with a permissions violation."""


class _Connection:
    """One nats-py client, with what the publisher needs to know about it."""

    def __init__(self, target: NatsTarget) -> None:
        self.client = Client()
        self.target = target
        self.closed = asyncio.Event()
        self.reason: str | None = None  # why it closed, as the broker or nats-py said
        self.last_exception: Exception | None = None
        self.in_flight = 0
        self._denials: list[tuple[str, asyncio.Future[str]]] = []

    @property
    def live(self) -> bool:
        return self.client.is_connected and not self.closed.is_set()

    async def on_error(self, exc: Exception) -> None:
        self.last_exception = exc
        text = _clean(str(exc) or type(exc).__name__, self.target)
        log.debug("nats %s: %s", self.target.address, text)
        if isinstance(exc, nats.errors.AuthorizationError):
            self.reason = "authorization violation"
        elif "permissions violation" in text.lower():
            # Not tied to a message by the protocol: it names the subject, and every
            # publish waiting on that subject fails with it.
            for subject, waiter in self._denials:
                if f'"{subject.lower()}"' in text.lower() and not waiter.done():
                    waiter.set_result(text)
        else:
            self.reason = text

    async def on_closed(self) -> None:
        self.closed.set()

    def watch_denial(self, subject: str) -> asyncio.Future[str]:
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        entry = (subject, waiter)
        self._denials.append(entry)
        waiter.add_done_callback(lambda _: self._denials.remove(entry))
        return waiter

    async def close(self) -> None:
        self.closed.set()
        try:
            await self.client.close()
        except Exception:  # closing a half-made connection may fail; it is gone either way
            log.debug("nats %s: close failed", self.target.address, exc_info=True)


class Publisher:
    """One event loop on a daemon thread, and the connections it holds."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self._max_connections = max_connections
        self._loop = asyncio.new_event_loop()
        # Touched on the loop's thread only.
        self._connections: OrderedDict[tuple[str, int, str], _Connection] = OrderedDict()
        self._connecting: dict[tuple[str, int, str], asyncio.Task[_Connection]] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._thread.start()

    # -- on the calling thread ---------------------------------------------------------

    def publish(self, target: NatsTarget, message: Message, deadline: float) -> DeliveryReport:
        """Publish `message` to `target` and wait for its PubAck, all before `deadline`
        (time.monotonic()). Never raises: every failure is a failed report."""
        progress = _Progress()
        addresses: list[Address] | None = None
        may_resend = True
        while True:
            if time.monotonic() >= deadline:
                return _timed_out(progress)
            future = asyncio.run_coroutine_threadsafe(
                self._attempt(target, message, deadline, progress, addresses, may_resend),
                self._loop,
            )
            try:
                return future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                future.cancel()
                return _timed_out(progress)
            except _NeedAddresses:
                # Resolving blocks, so it is done here, never on the loop. A second round
                # after a kept connection dropped mid-publish may send the message again:
                # the same Nats-Msg-Id lets JetStream store it once.
                if addresses is not None:
                    may_resend = False
                progress.step = "name resolution"
                found = _checked_addresses(target, deadline)
                if isinstance(found, DeliveryReport):
                    return found
                addresses = found
            except Exception as exc:  # a bug here is a failed attempt, not a dead thread
                return DeliveryReport.failed(
                    _clean(f"delivery error: {_describe_any(exc)}", target),
                    sent_at=progress.sent_at,
                )

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and stop the loop (for tests and shutdown)."""
        if not self._loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._close_all(), self._loop)
        try:
            future.result(timeout)
        except Exception:
            log.debug("nats: closing connections failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # -- on the loop -------------------------------------------------------------------

    async def _attempt(
        self,
        target: NatsTarget,
        message: Message,
        deadline: float,
        progress: _Progress,
        addresses: list[Address] | None,
        may_resend: bool,
    ) -> DeliveryReport:
        try:
            async with asyncio.timeout_at(deadline):  # the loop's clock is time.monotonic()
                connection, reused = await self._connection(target, addresses, deadline, progress)
                progress.step = "publish"
                limit = connection.client.max_payload
                if message.size() > limit:
                    return DeliveryReport.failed(
                        f"the message ({message.size()} bytes with its headers) is over the "
                        f"broker's max_payload ({limit} bytes)"
                    )
                try:
                    ack = await self._publish(connection, message, deadline, progress)
                except _ConnectionLost:
                    self._forget(connection)
                    if reused and may_resend:
                        raise _NeedAddresses from None  # a kept connection went stale
                    raise
        except _NeedAddresses:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and time.monotonic() >= deadline - DEADLINE_SLACK_S:
                return _timed_out(progress)
            return DeliveryReport.failed(_describe(exc, target, message), sent_at=progress.sent_at)
        log.debug("nats %s: stored as %s #%s", target.address, ack.stream, ack.seq)
        return DeliveryReport.accepted(sent_at=progress.sent_at)

    async def _connection(
        self,
        target: NatsTarget,
        addresses: list[Address] | None,
        deadline: float,
        progress: _Progress,
    ) -> tuple[_Connection, bool]:
        """The live connection to `target` (True: it was kept from before), or a new one
        to the first of `addresses` that answers; concurrent attempts share one connect."""
        key = target.connection_key
        connection = self._connections.get(key)
        if connection is not None:
            if connection.live:
                self._connections.move_to_end(key)
                return connection, True
            self._forget(connection)
        connecting = self._connecting.get(key)
        if connecting is None:
            if addresses is None:
                raise _NeedAddresses
            connecting = asyncio.ensure_future(self._connect(target, addresses, deadline))
            self._connecting[key] = connecting
            connecting.add_done_callback(lambda task: self._connected(key, task))
        progress.step = "connect"
        # Shielded: one attempt giving up does not cancel the connect others wait on.
        return await asyncio.shield(connecting), False

    async def _connect(
        self, target: NatsTarget, addresses: list[Address], deadline: float
    ) -> _Connection:
        error: BaseException = TimeoutError()
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError()
            connection = _Connection(target)
            try:
                await asyncio.wait_for(
                    connection.client.connect(
                        **_connect_options(target, address, connection, remaining)
                    ),
                    remaining,
                )
                return connection
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                await connection.close()
                error = exc
                if isinstance(exc, nats.errors.NoServersError) and connection.last_exception:
                    error = connection.last_exception  # why the server failed, not "no servers"
                if "authorization violation" in str(exc).lower():
                    break  # the next address would refuse the same credentials
            except BaseException:
                await connection.close()
                raise
        raise error

    def _connected(self, key: tuple[str, int, str], task: asyncio.Task[_Connection]) -> None:
        if self._connecting.get(key) is task:
            del self._connecting[key]
        if task.cancelled() or task.exception() is not None:
            return  # (the exception is read here, so an unawaited one is not reported)
        self._connections[key] = task.result()
        self._evict()

    def _evict(self) -> None:
        for key, connection in list(self._connections.items()):
            if len(self._connections) <= self._max_connections:
                return
            if connection.in_flight == 0:
                del self._connections[key]
                self._close_later(connection)

    def _forget(self, connection: _Connection) -> None:
        key = connection.target.connection_key
        if self._connections.get(key) is connection:
            del self._connections[key]
        self._close_later(connection)

    def _close_later(self, connection: _Connection) -> None:
        # The loop keeps only weak references to tasks: hold this one until it is done.
        closing = asyncio.ensure_future(connection.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _publish(
        self, connection: _Connection, message: Message, deadline: float, progress: _Progress
    ) -> PubAck:
        """The publish and its PubAck; it fails at once when the connection closes or the
        broker refuses the subject, rather than waiting out the deadline for an ack that
        cannot come."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:  # no byte goes out after the deadline
            raise TimeoutError()
        if progress.sent_at is None:
            progress.sent_at = time.monotonic()
        connection.in_flight += 1
        publish = asyncio.ensure_future(
            connection.client.jetstream().publish(
                message.subject,
                message.body,
                timeout=remaining,
                stream=message.stream,
                headers=dict(message.headers),
            )
        )
        closed = asyncio.ensure_future(connection.closed.wait())
        denied = connection.watch_denial(message.subject)
        try:
            waiters: set[asyncio.Future[Any]] = {publish, closed, denied}
            while not (await asyncio.wait(waiters, timeout=CLOSED_POLL_S, return_when=FIRST))[0]:
                # Older nats-py releases may close a connection without calling closed_cb
                # (the read loop cancels itself inside close): its status still tells.
                if connection.client.is_closed:
                    connection.closed.set()
        finally:
            connection.in_flight -= 1
            for waiter in (publish, closed, denied):
                if not waiter.done():
                    waiter.cancel()
        if publish.done() and not publish.cancelled():
            return publish.result()
        if denied.done() and not denied.cancelled():
            raise _PublishDenied(denied.result())
        raise _ConnectionLost(connection.reason)

    async def _close_all(self) -> None:
        for task in list(self._connecting.values()):
            task.cancel()
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
        # What nats-py left running (older releases leave subscription tasks behind).
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


def _connect_options(
    target: NatsTarget, address: Address, connection: _Connection, timeout: float
) -> dict[str, Any]:
    host = f"[{address.ip}]" if ":" in address.ip else address.ip
    options: dict[str, Any] = {
        # The checked address, never the name: what the policy passed is what is reached.
        "servers": [f"nats://{host}:{address.sockaddr[1]}"],
        "name": CONNECTION_NAME,
        # One connection, made once: a dropped one closes, and the next attempt connects
        # again (within its own deadline), instead of nats-py reconnecting in the
        # background, to servers it discovered, for as long as it likes. While connecting,
        # nats-py retries a server that failed until it has failed more than
        # max_reconnect_attempts times (0 would mean forever): 1 is two quick tries, with
        # no wait between them, then NoServersError.
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0,
        "dont_randomize": True,
        # Per step of nats-py's handshake; the caller bounds the whole with wait_for.
        "connect_timeout": timeout,
        # When the broker requires TLS, its certificate is checked against the URL's host.
        "tls_hostname": target.host,
        "error_cb": connection.on_error,
        "disconnected_cb": connection.on_closed,
        "closed_cb": connection.on_closed,
    }
    if target.user is not None:
        options["user"] = target.user
        options["password"] = target.password or ""
    if target.token is not None:
        options["token"] = target.token
    return options


def _checked_addresses(target: NatsTarget, deadline: float) -> list[Address] | DeliveryReport:
    """The target's addresses, every one passed by the target policy, or why not."""
    try:
        addresses = default_resolver.resolve(target.host, target.port, deadline)
    except ResolutionTimeout:
        return DeliveryReport.failed(TIMEOUT_STEPS["name resolution"], timed_out=True)
    except ResolutionError as exc:
        return DeliveryReport.failed(_clean(f"dns error: {exc}", target))
    refusal = refusal_at_connect(target.host, [a.ip for a in addresses])
    if refusal is not None:
        return DeliveryReport.failed(f"target refused: {refusal}")
    if not addresses:
        return DeliveryReport.failed(f"dns error: {target.host} has no address")
    return addresses


def _timed_out(progress: _Progress) -> DeliveryReport:
    return DeliveryReport.failed(
        TIMEOUT_STEPS.get(progress.step, TIMEOUT_STEPS["publish"]),
        timed_out=True,
        sent_at=progress.sent_at,
    )


def _describe(exc: BaseException, target: NatsTarget, message: Message) -> str:
    """A broker failure in a few words, never the credentials."""
    broker = f"the broker at {target.address}"
    if isinstance(exc, _ConnectionLost):
        reason = f": {exc.args[0]}" if exc.args and exc.args[0] else ""
        text = f"{broker} closed the connection before the PubAck{reason}"
    elif isinstance(exc, _PublishDenied):
        text = f"{broker} refused the publish to {message.subject!r}: {exc.args[0]}"
    elif isinstance(exc, nats.js.errors.NoStreamResponseError):
        text = f"no JetStream stream for subject {message.subject!r} (no responders)"
    elif isinstance(exc, nats.js.errors.APIError):
        text = (
            f"JetStream refused the message: {exc.description or 'no description'} "
            f"(code {exc.code}, err_code {exc.err_code})"
        )
    elif isinstance(exc, nats.errors.AuthorizationError) or (
        # at connect, nats-py raises the broker's -ERR as a plain Error
        isinstance(exc, nats.errors.Error) and "authorization violation" in str(exc).lower()
    ):
        text = f"{broker} refused the credentials (authorization violation)"
    elif isinstance(exc, ConnectionRefusedError):
        text = f"could not connect to {broker}: connection refused"
    elif isinstance(exc, TimeoutError):
        text = f"could not connect to {broker}: timed out"
    elif isinstance(exc, OSError):
        text = f"could not connect to {broker}: {_describe_any(exc)}"
    elif isinstance(exc, nats.errors.Error):
        text = f"nats error from {broker}: {_describe_any(exc)}"
    else:
        text = f"delivery error: {_describe_any(exc)}"
    return _clean(text, target)


def _describe_any(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _clean(text: str, target: NatsTarget) -> str:
    """`text` with the target's credentials, and any URL's userinfo, taken out."""
    return scrub(redact(text, target.secrets()))
