"""One connection to a broker with its confirm-mode channel, driven within a deadline.

pika's SelectConnection runs here on an IOLoop of its own, which the thread that holds
the link drives (`IOLoop.poll` and `process_timeouts`, as BlockingConnection does) only
as long as the attempt's deadline allows. A link is never used by two threads at once:
the pool hands each one to a single attempt at a time. BlockingConnection is not used:
its publisher-confirm wait has no timeout, and a deadline must bound every step.

Heartbeats are off (the link's I/O runs only while an attempt uses it): a broker that went
away is seen as the socket's end of stream before the next publish (`refresh`), and a
link idle for long is not reused at all (see the pool).
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import pika
import pika.exceptions
import pika.spec
from pika.adapters.select_connection import IOLoop, SelectConnection
from pika.adapters.utils import connection_workflow as workflow

from scheduler_core_amqp.url import Endpoint

log = logging.getLogger(__name__)

# pika logs every connection step at INFO and each failure over several ERROR lines; every
# attempt's outcome is in its lastError and the delivery log already. Unless the operator
# set a level for "pika", only its critical lines show.
if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.CRITICAL)

CONNECTION_NAME = "scheduler-core"
PERSISTENT = 2  # delivery_mode: the broker writes the message to disk (durable queues)
# How long closing a link may take, on the closer's thread, never an attempt's.
CLOSE_TIMEOUT_S = 2.0


class LinkTimeout(Exception):
    """The deadline passed during `step` (how the core's timeout error names it)."""

    def __init__(self, step: str):
        super().__init__(step)
        self.step = step


class LinkError(Exception):
    """A broker failure, already described in a few words (no credentials)."""


class Confirm:
    """What the broker said about one published message."""

    ACK = "ack"
    NACK = "nack"


def _noop() -> None:
    pass


class Link:
    """A connection to one checked address of a broker, and a channel in confirm mode."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.ioloop = IOLoop()
        self.ioloop.activate_poller()
        self.connection: Any = None
        self.opened = False
        self.open_error: BaseException | None = None
        self.closed: BaseException | None = None  # why the open connection closed
        self.channel: Any = None
        self.channel_closed: BaseException | None = None
        self.blocked: str | None = None  # the broker's reason while it blocks publishers
        self.last_used = time.monotonic()
        # The one message in flight: its delivery tag, what came back for it.
        self._tags = 0
        self._waiting_tag = 0
        self.confirm: str | None = None
        self.returned: Any = None  # the Basic.Return method when the broker sent it back

    # -- state -------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """The connection is open (its channel may need opening again)."""
        return self.opened and self.closed is None and self.connection is not None

    @property
    def channel_open(self) -> bool:
        return self.channel is not None and self.channel_closed is None

    # -- driving the I/O loop ----------------------------------------------------------

    def run_until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Process I/O until `done()` or the deadline; whether `done()` came true."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return done()
            self._poll(remaining)
        return True

    def refresh(self) -> None:
        """Take in whatever arrived while the link sat idle (the end of the stream of a
        broker that went away, connection.blocked), without waiting."""
        if self.connection is not None:
            self._poll(0.0)

    def _poll(self, wait: float) -> None:
        wake = self.ioloop.call_later(max(wait, 0.0), _noop)  # poll waits for timers
        try:
            self.ioloop.poll()
            self.ioloop.process_timeouts()
        finally:
            self.ioloop.remove_timeout(wake)

    # -- opening -----------------------------------------------------------------------

    def open(self, endpoint: Endpoint, deadline: float) -> None:
        """Connect (TCP, TLS, AMQP handshake) to this link's address and open the channel;
        raises LinkTimeout or LinkError."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LinkTimeout("the connection to the broker did not open")
        ssl_options = None
        if endpoint.tls:
            # Verify the certificate for the name in the URL, though the connection goes
            # to the address that name was checked at.
            ssl_options = pika.SSLOptions(ssl.create_default_context(), endpoint.host)
        parameters = pika.ConnectionParameters(
            host=self.ip,
            port=endpoint.port,
            virtual_host=endpoint.vhost,
            credentials=pika.PlainCredentials(
                endpoint.username, endpoint.password, erase_on_connect=True
            ),
            ssl_options=ssl_options,
            connection_attempts=1,
            socket_timeout=remaining,
            # The deadline check below ends it first; pika's own timer is a backstop.
            stack_timeout=remaining + 1.0,
            blocked_connection_timeout=max(remaining, 1.0),
            heartbeat=0,
            client_properties={"connection_name": CONNECTION_NAME},
        )
        self.connection = SelectConnection(
            parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
            custom_ioloop=self.ioloop,
        )
        if not self.run_until(lambda: self.opened or self.open_error is not None, deadline):
            raise LinkTimeout("the connection to the broker did not open")
        if self.open_error is not None:
            raise LinkError(describe_error(self.open_error))
        self.connection.add_on_connection_blocked_callback(self._on_blocked)
        self.connection.add_on_connection_unblocked_callback(self._on_unblocked)
        self.open_channel(deadline)

    def open_channel(self, deadline: float) -> None:
        """A fresh channel in confirm mode, with returns reported here."""
        opened: list[Any] = []
        self.channel = None
        self.channel_closed = None
        self.connection.channel(on_open_callback=opened.append)
        if not self.run_until(lambda: bool(opened) or self.closed is not None, deadline):
            raise LinkTimeout("the broker did not open a channel")
        if self.closed is not None:
            raise LinkError(describe_error(self.closed))
        channel = opened[0]
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        selected: list[Any] = []
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=selected.append)
        if not self.run_until(
            lambda: bool(selected) or self.channel_closed is not None or self.closed is not None,
            deadline,
        ):
            raise LinkTimeout("the broker did not open a channel")
        self.channel = channel
        if self.closed is not None or self.channel_closed is not None:
            raise LinkError(describe_error(self.closed or self.channel_closed))
        self._tags = 0

    # -- publishing --------------------------------------------------------------------

    def publish(
        self,
        endpoint: Endpoint,
        body: bytes,
        properties: pika.BasicProperties,
        deadline: float,
        on_send: Callable[[], None],
    ) -> str:
        """Publish one message (mandatory) and wait for its confirm until the deadline.

        Returns Confirm.ACK or Confirm.NACK (see `returned` for a message sent back as
        unroutable); raises LinkTimeout when no confirm came in time, LinkError when the
        channel or connection closed first. `on_send` is called just before the first
        byte may go out; nothing is published once the deadline has passed.
        """
        self.last_used = time.monotonic()
        if self.blocked is not None:
            raise LinkError(
                f"the broker is blocking publishers (connection.blocked: {self.blocked})"
            )
        if time.monotonic() >= deadline:
            raise LinkTimeout("the message was not published")
        self.confirm = None
        self.returned = None
        self._tags += 1
        self._waiting_tag = self._tags
        on_send()
        self.channel.basic_publish(
            endpoint.exchange,
            endpoint.routing_key,
            body,
            properties=properties,
            mandatory=True,
        )
        self.run_until(
            lambda: (
                self.confirm is not None
                or self.channel_closed is not None
                or self.closed is not None
            ),
            deadline,
        )
        self.last_used = time.monotonic()
        if self.confirm is not None:
            return self.confirm
        if self.closed is not None or self.channel_closed is not None:
            raise LinkError(describe_error(self.closed or self.channel_closed))
        raise LinkTimeout("no publisher confirm from the broker")

    # -- closing -----------------------------------------------------------------------

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close the connection (gracefully if it is open, for at most `timeout`) and
        release the loop. Never called on an attempt's thread while it waits."""
        deadline = time.monotonic() + timeout
        connection = self.connection
        try:
            if connection is not None and not (connection.is_closed or connection.is_closing):
                connection.close()
            if connection is not None:
                self.run_until(lambda: bool(connection.is_closed), deadline)
        except Exception as exc:  # closing a broken link: nothing left to save
            log.debug("closing an AMQP link: %s", type(exc).__name__)
        finally:
            self.connection = None
            self.channel = None
            try:
                self.ioloop.close()
            except Exception as exc:
                log.debug("closing an AMQP link's loop: %s", type(exc).__name__)

    # -- pika's callbacks, on this link's loop -------------------------------------------

    def _on_open(self, _connection: Any) -> None:
        self.opened = True

    def _on_open_error(self, _connection: Any, error: BaseException) -> None:
        self.open_error = error

    def _on_close(self, _connection: Any, reason: BaseException) -> None:
        self.closed = reason

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self.blocked = str(getattr(frame.method, "reason", "") or "resource alarm")

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = None

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self.channel or self.channel is None:
            self.channel_closed = reason

    def _on_return(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        self.returned = method

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = int(getattr(method, "delivery_tag", 0))
        multiple = bool(getattr(method, "multiple", False))
        if tag == self._waiting_tag or (multiple and tag >= self._waiting_tag) or tag == 0:
            if isinstance(method, pika.spec.Basic.Nack):
                self.confirm = Confirm.NACK
            else:
                self.confirm = Confirm.ACK


def message_properties(headers: Mapping[str, str], message_id: str) -> pika.BasicProperties:
    """The callback's headers, in order, as the message's headers; Content-Type also as
    content_type; the task id as message_id; persistent delivery."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    return pika.BasicProperties(
        content_type=content_type,
        headers=dict(headers),
        message_id=message_id,
        delivery_mode=PERSISTENT,
    )


# -- errors, in a few words ------------------------------------------------------------------


def describe_error(error: BaseException | None) -> str:
    """A broker failure as lastError says it. Credentials never come from here: pika's
    texts name no password, and the caller scrubs the login's name and password too."""
    if error is None:
        return "broker error"
    # Unwrap pika's connection-workflow envelopes down to what went wrong.
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(error, pika.exceptions.AMQPConnectionError) and type(error) in (
            pika.exceptions.AMQPConnectionError,
        ):
            inner = next((a for a in error.args if isinstance(a, BaseException)), None)
            if inner is None:
                break
            error = inner
        elif isinstance(error, workflow.AMQPConnectionWorkflowFailed):
            if not error.exceptions:
                break
            error = error.exceptions[-1]
        elif isinstance(error, workflow.AMQPConnectorPhaseErrorBase):
            error = error.exception
        else:
            break
    return _describe(error)


def _describe(error: BaseException) -> str:
    exc = pika.exceptions
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return f"tls error: {type(error).__name__}: {_text(error)}"
    if isinstance(error, exc.ProbableAuthenticationError | exc.AuthenticationError):
        return "the broker refused the login (ACCESS_REFUSED): check the user and password"
    if isinstance(error, exc.ProbableAccessDeniedError):
        return f"the broker refused the virtual host: {_closed_text(error)}"
    if isinstance(error, exc.ChannelClosedByBroker):
        return f"the broker closed the channel: {error.reply_code} {error.reply_text}"
    if isinstance(error, exc.ConnectionClosedByBroker):
        return f"the broker closed the connection: {error.reply_code} {error.reply_text}"
    if isinstance(error, exc.StreamLostError):
        return f"connection to the broker lost: {_text(error)}"
    if isinstance(error, exc.IncompatibleProtocolError):
        return (
            "the connection closed during the AMQP handshake (is it an AMQP 0-9-1 broker, "
            "and does it take this connection?)"
        )
    if isinstance(error, exc.ConnectionBlockedTimeout):
        return "the broker blocked the connection for too long (connection.blocked)"
    if isinstance(error, exc.ConnectionClosed | exc.ChannelClosed):
        return f"connection to the broker closed: {error.reply_code} {error.reply_text}"
    if isinstance(error, workflow.AMQPConnectorStackTimeout):
        return "the connection to the broker did not open in time"
    if isinstance(error, OSError):
        return f"connection error: {type(error).__name__}: {_text(error)}"
    return f"broker error: {type(error).__name__}: {_text(error)}"


def _closed_text(error: BaseException) -> str:
    """The broker's reply text inside pika's 'probable ...' errors."""
    for arg in error.args:
        if isinstance(arg, pika.exceptions.ConnectionClosed):
            return f"{arg.reply_code} {arg.reply_text}"
        if isinstance(arg, str) and arg:
            # "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost x not found'"
            match = re.search(r"\((\d+)\) ['\"](.*)['\"]\s*$", arg)
            return f"{match.group(1)} {match.group(2)}" if match else arg
    return type(error).__name__


def _text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    if error.args and all(isinstance(a, str) for a in error.args) and len(error.args) == 1:
        text = error.args[0]
    return text or type(error).__name__
