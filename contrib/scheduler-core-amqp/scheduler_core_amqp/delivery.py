"""Publishing one callback: kept connections per broker, the target policy, the deadline.

Connections (`Link`: a connection and its confirm-mode channel) are kept between
attempts, up to MAX_LINKS_PER_BROKER per broker, vhost and login; an attempt takes one
for itself, so no two threads ever drive the same pika connection. A new connection
resolves the host through ``scheduler_core.resolver`` within the deadline, asks the
process's target policy about every address (``scheduler_core.targets``), and goes to a
checked address and no other. A kept connection is checked again (its address, against the
policy now in force) before every use.
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from scheduler_core.models import DeliveryReport
from scheduler_core.resolver import ResolutionError, ResolutionTimeout, default_resolver
from scheduler_core.targets import refusal_at_connect

from scheduler_core_amqp.link import (
    Confirm,
    Link,
    LinkError,
    LinkTimeout,
    describe_error,
    message_properties,
)
from scheduler_core_amqp.url import Endpoint, InvalidURL, parse

if TYPE_CHECKING:
    from scheduler_core.models import Callback

log = logging.getLogger(__name__)

# Connections kept per broker (scheme, host, port, vhost, login), and brokers kept.
MAX_LINKS_PER_BROKER = 8
MAX_BROKERS = 256
# A connection idle longer than this is closed rather than reused: with heartbeats off, a
# peer that vanished without a word (a NAT that forgot the flow) is not seen otherwise.
MAX_IDLE_S = 60.0
# A kept connection found dead during the attempt is replaced, and the message published
# again on a fresh one, this many times at most (at-least-once allows the repeat; the
# deadline still bounds it).
STALE_LINK_RETRIES = 1

REDACTED = "[redacted]"

BrokerKey = tuple[str, str, int, str, str, str]


class _Broker:
    """The links of one broker: the idle ones, and how many exist (idle, busy, opening)."""

    def __init__(self, lock: threading.Lock) -> None:
        self.idle: list[Link] = []
        self.count = 0
        self.freed = threading.Condition(lock)


class _Closer:
    """Closes links on a thread of its own: a graceful AMQP close takes a round trip,
    which an attempt must not wait for."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Link] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def close(self, link: Link) -> None:
        self._queue.put(link)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="amqp-closer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            link = self._queue.get()
            try:
                link.close()
            except Exception as exc:  # pragma: no cover - close() already swallows
                log.debug("closing an AMQP link failed: %s", type(exc).__name__)


class Pool:
    """Links per broker, handed to one attempt at a time."""

    def __init__(
        self,
        per_broker: int = MAX_LINKS_PER_BROKER,
        max_brokers: int = MAX_BROKERS,
        max_idle_s: float = MAX_IDLE_S,
    ) -> None:
        self.per_broker = per_broker
        self.max_brokers = max_brokers
        self.max_idle_s = max_idle_s
        self._lock = threading.Lock()
        self._brokers: OrderedDict[BrokerKey, _Broker] = OrderedDict()
        self._closer = _Closer()

    def checkout(self, key: BrokerKey, deadline: float) -> Link | None:
        """An idle link to the broker, or None when the caller may open a new one (its
        place is then reserved: `release` it if opening fails). While every link is busy,
        waits for one until the deadline, then raises LinkTimeout."""
        expired: list[Link] = []
        try:
            with self._lock:
                broker = self._brokers.get(key)
                if broker is None:
                    broker = self._brokers[key] = _Broker(self._lock)
                    expired += self._evict(keep=key)
                self._brokers.move_to_end(key)
                while True:
                    now = time.monotonic()
                    while broker.idle:
                        link = broker.idle.pop()  # the most recently used
                        if now - link.last_used <= self.max_idle_s:
                            return link
                        broker.count -= 1
                        expired.append(link)
                    if broker.count < self.per_broker:
                        broker.count += 1
                        return None
                    remaining = deadline - now
                    if remaining <= 0:
                        raise LinkTimeout("every connection to the broker stayed busy")
                    broker.freed.wait(remaining)
        finally:
            for link in expired:
                self._closer.close(link)

    def checkin(self, key: BrokerKey, link: Link) -> None:
        """Keep `link` for the next attempt."""
        expired: list[Link] = []
        with self._lock:
            broker = self._brokers.get(key)
            if broker is None:  # evicted meanwhile (close_all)
                expired.append(link)
            else:
                broker.idle.append(link)
                now = time.monotonic()
                while broker.idle and now - broker.idle[0].last_used > self.max_idle_s:
                    expired.append(broker.idle.pop(0))
                    broker.count -= 1
                broker.freed.notify()
        for stale in expired:
            self._closer.close(stale)

    def discard(self, key: BrokerKey, link: Link) -> None:
        """`link` is spent: close it, and free its place."""
        self.release(key)
        self._closer.close(link)

    def release(self, key: BrokerKey) -> None:
        """Free a place reserved by `checkout` (or held by a discarded link)."""
        with self._lock:
            broker = self._brokers.get(key)
            if broker is not None:
                broker.count = max(0, broker.count - 1)
                broker.freed.notify()

    def closing(self, link: Link) -> None:
        """Close a link that never joined the pool."""
        self._closer.close(link)

    def close_all(self, timeout: float = 2.0) -> None:
        """Close every idle link now, on this thread, within `timeout` in all. Links in
        use are left to their attempts."""
        with self._lock:
            idle: list[Link] = []
            for key in list(self._brokers):
                broker = self._brokers[key]
                idle += broker.idle
                broker.count -= len(broker.idle)
                broker.idle = []
                if broker.count <= 0:
                    del self._brokers[key]
        deadline = time.monotonic() + timeout
        for link in idle:
            link.close(max(0.0, deadline - time.monotonic()))

    def idle_links(self, key: BrokerKey) -> int:
        with self._lock:
            broker = self._brokers.get(key)
            return len(broker.idle) if broker is not None else 0

    def _evict(self, keep: BrokerKey) -> list[Link]:
        """Under the lock: forget the least recently used brokers with no link in use
        while there are too many. Their idle links are returned, to be closed."""
        expired: list[Link] = []
        for key in list(self._brokers):
            if len(self._brokers) <= self.max_brokers:
                break
            broker = self._brokers[key]
            if key == keep or broker.count != len(broker.idle):
                continue
            expired += broker.idle
            del self._brokers[key]
        return expired


pool = Pool()
atexit.register(pool.close_all, 1.0)


def publish(callback: Callback, deadline: float) -> DeliveryReport:
    """Publish `callback` to the broker its URL names and wait for the confirm, all
    before `deadline` (time.monotonic()). Never raises; an error never holds the URL's
    credentials."""
    try:
        endpoint = parse(callback.url)
    except InvalidURL as exc:
        return DeliveryReport.failed(f"invalid url: {exc}")
    attempt = _Attempt(endpoint, deadline)
    try:
        report = attempt.run(callback)
    except LinkTimeout as exc:
        report = DeliveryReport.failed(exc.step, timed_out=True, sent_at=attempt.sent_at)
    except LinkError as exc:
        report = DeliveryReport.failed(str(exc), sent_at=attempt.sent_at)
    except Exception as exc:  # a pika surprise is a failed attempt, never a crash
        report = DeliveryReport.failed(describe_error(exc), sent_at=attempt.sent_at)
    if report.error is not None:
        return DeliveryReport.failed(
            scrub(report.error, endpoint.secrets()),
            timed_out=report.timed_out,
            sent_at=report.sent_at,
        )
    return report


class _Attempt:
    def __init__(self, endpoint: Endpoint, deadline: float) -> None:
        self.endpoint = endpoint
        self.deadline = deadline
        self.sent_at: float | None = None

    def _sending(self) -> None:
        if self.sent_at is None:
            self.sent_at = time.monotonic()

    def run(self, callback: Callback) -> DeliveryReport:
        endpoint, deadline, key = self.endpoint, self.deadline, self.endpoint.broker_key
        message_id = callback.headers.get("webhook-id") or callback.task_id
        properties = message_properties(callback.headers, message_id)
        retries = STALE_LINK_RETRIES
        step = "the attempt did not start"
        while True:
            if time.monotonic() >= deadline:
                raise LinkTimeout(step)
            step = "the connection to the broker did not open"
            link = pool.checkout(key, deadline)
            reused = link is not None
            if link is None:
                try:
                    link = self._connect()
                except BaseException:
                    pool.release(key)
                    raise
            else:
                # The policy in force now decides, for the address this link goes to.
                refusal = refusal_at_connect(endpoint.host, [link.ip])
                if refusal is not None:
                    pool.checkin(key, link)
                    return DeliveryReport.failed(f"target refused: {refusal}")
                link.refresh()
                if not link.usable:  # the broker went away while it sat idle
                    pool.discard(key, link)
                    continue
            try:
                if not link.channel_open:
                    link.open_channel(deadline)
                confirm = link.publish(endpoint, callback.body, properties, deadline, self._sending)
            except LinkError:
                if link.usable:  # only the channel closed (an unknown exchange, say)
                    pool.checkin(key, link)
                    raise
                pool.discard(key, link)
                if reused and retries > 0 and time.monotonic() < deadline:
                    retries -= 1  # a kept connection that died: once more on a fresh one
                    continue
                raise
            except BaseException:
                # A timeout (a confirm may still come) or a surprise: the link's state is
                # unknown, so it is not used again.
                pool.discard(key, link)
                raise
            pool.checkin(key, link)
            if confirm == Confirm.NACK:
                return DeliveryReport.failed(
                    "broker nack: the broker refused the message (a queue at its limit "
                    "with overflow=reject-publish, or an internal error)",
                    sent_at=self.sent_at,
                )
            if link.returned is not None:
                method = link.returned
                return DeliveryReport.failed(
                    "unroutable: the broker returned the message "
                    f"({method.reply_code} {method.reply_text}): no queue is bound for "
                    "its exchange and routing key",
                    sent_at=self.sent_at,
                )
            return DeliveryReport.accepted(sent_at=self.sent_at)

    def _connect(self) -> Link:
        """A new link to a checked address of the broker, or LinkTimeout / LinkError."""
        endpoint, deadline = self.endpoint, self.deadline
        try:
            addresses = default_resolver.resolve(endpoint.host, endpoint.port, deadline)
        except ResolutionTimeout:
            raise LinkTimeout("name resolution did not finish") from None
        except ResolutionError as exc:
            raise LinkError(f"dns error: {exc}") from None
        # Every address is checked, and the connection goes to these and no others, so a
        # name that resolves somewhere else later (DNS rebinding) cannot pass.
        refusal = refusal_at_connect(endpoint.host, [a.ip for a in addresses])
        if refusal is not None:
            raise LinkError(f"target refused: {refusal}")
        ips = list(dict.fromkeys(a.ip for a in addresses))
        last_error: LinkError | None = None
        for ip in ips:
            link = Link(ip)
            try:
                link.open(endpoint, deadline)
                return link
            except LinkError as exc:
                pool.closing(link)
                last_error = exc
            except BaseException:
                pool.closing(link)
                raise
            if time.monotonic() >= deadline:
                raise LinkTimeout("the connection to the broker did not open")
        if last_error is None:  # pragma: no cover - a resolver answers with addresses
            raise LinkError("dns error: the name resolved to no address")
        raise last_error


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every credential of the URL replaced by [redacted], in any case."""
    for secret in secrets:
        text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return text
