"""Built-in delivery: the core's callback as an HTTP POST, with requests.

The attempt's deadline bounds everything: name resolution (through
``scheduler_core.resolver``, on its own threads), connecting to the address it returned,
the TLS handshake, sending, and reading the answer. No byte is written after the deadline.
Redirects are not followed; informational 1xx answers are read past; the status line and
headers may take MAX_HEADER_BYTES in all, and at most MAX_RESPONSE_BYTES of the body is
read, raw, never decompressed. What came back is reported as raw facts: the core judges.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import DeliveryReport
from scheduler_core.plugins.socket_deadline import (
    DeadlineExceeded,
    DeadlineScope,
    SocketWatchdog,
    current_scope,
    register_current,
)
from scheduler_core.resolver import (
    ConnectTimeout,
    ResolutionError,
    ResolutionTimeout,
    connect,
    default_resolver,
)
from scheduler_core.targets import refusal_at_connect

if TYPE_CHECKING:
    from scheduler_core.models import Callback

SCHEMES = ("http", "https")
MAX_RESPONSE_BYTES = 64 * 1024
# http.client alone lets 100 header lines of 64 KiB through: 6 MiB, ~50 MB once parsed.
MAX_HEADER_BYTES = 64 * 1024
# Connections kept alive per target host, and target hosts kept in the pool.
POOL_PER_HOST = 64
POOL_HOSTS = 256

# What the attempt was doing when its deadline passed, as the error will say it.
TIMEOUT_STEPS = {
    "start": "the attempt did not start",
    "name resolution": "name resolution did not finish",
    "connect": "could not connect",
    "tls handshake": "the TLS handshake did not finish",
    "send": "could not send the request",
    "response": "no complete response",
}

_watchdog = SocketWatchdog()


class ResponseHeadersTooLarge(http.client.HTTPException):
    pass


class _HeaderBudget:
    """The response's reader while its head is parsed: MAX_HEADER_BYTES of lines in all,
    interim 1xx answers included."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._left = MAX_HEADER_BYTES

    def readline(self, limit: int = -1) -> bytes:
        want = self._left + 1 if limit < 0 else min(limit, self._left + 1)
        line: bytes = self._reader.readline(want)
        self._left -= len(line)
        if self._left < 0:
            raise ResponseHeadersTooLarge(f"response headers over {MAX_HEADER_BYTES} bytes")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _BoundedResponse(http.client.HTTPResponse):
    def begin(self) -> None:
        reader = self.fp
        self.fp = _HeaderBudget(reader)  # type: ignore[assignment]
        try:
            super().begin()
        finally:
            if isinstance(self.fp, _HeaderBudget):  # None once a bad status line closed it
                self.fp = reader

    def _read_status(self) -> tuple[str, int, str]:
        # Only a final answer counts: skip informational ones (100, 102, 103...); 101 is
        # a protocol switch nobody asked for, left for the core to judge.
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            while True:  # the interim answer's header block, under the same budget
                line = self.fp.readline(http.client._MAXLINE + 1)  # type: ignore[attr-defined]
                if len(line) > http.client._MAXLINE:  # type: ignore[attr-defined]
                    raise http.client.LineTooLong("header line")
                if line in (b"\r\n", b"\n", b""):
                    break


class _DeadlineConnection(HTTPConnection):
    """A connection that resolves and connects through scheduler_core.resolver within the
    attempt's deadline, writes nothing after it, and writes a request's head and body in
    one go (a receiver never gets half a request from a deadline that fell in between)."""

    response_class = _BoundedResponse
    tls = False
    requests_sent = 0
    _held: list[bytes] | None = None  # a request's head, waiting for its body
    _body_left = 0

    def _new_conn(self) -> socket.socket:
        scope = current_scope()
        deadline = scope.deadline if scope else time.monotonic() + 30.0
        _step(scope, "name resolution")
        try:
            addresses = default_resolver.resolve(self._dns_host, self.port, deadline)
        except ResolutionTimeout:
            raise ConnectTimeoutError(self, "name resolution timed out") from None
        except ResolutionError as exc:
            if scope is not None:
                scope.failure = f"dns error: {exc}"
            raise NameResolutionError(self.host, self, socket.gaierror(str(exc))) from None
        # Every address is checked, and the connection goes to these and no others, so a
        # name that resolves somewhere else later (DNS rebinding) cannot pass.
        refusal = refusal_at_connect(self._dns_host, [a.ip for a in addresses])
        if refusal is not None:
            if scope is not None:
                scope.failure = f"target refused: {refusal}"
            raise NewConnectionError(self, "target refused by the target policy")
        _step(scope, "connect")
        try:
            sock = connect(addresses, deadline, self.socket_options or (), self.source_address)
        except ConnectTimeout:
            raise ConnectTimeoutError(self, "connect timed out") from None
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        register_current(sock, before_tls=self.tls)  # a TLS handshake is bounded too
        if self.tls:
            _step(scope, "tls handshake")
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        register_current(self.sock)  # a kept-alive connection is reused without _new_conn
        scope = current_scope()
        if scope is not None:
            scope.reused = self.requests_sent > 0
        self.requests_sent += 1
        self._held = []  # the first write is the head
        super().request(*args, **kwargs)

    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()  # http.client would connect inside send(), after any check here
        if self._held is not None and isinstance(data, bytes | bytearray):
            if not self._held:
                self._body_left = _content_length(bytes(data))
            else:
                self._body_left -= len(data)
            self._held.append(bytes(data))
            if self._body_left > 0:
                return  # the body follows: hold the head until it is whole
            data, self._held = b"".join(self._held), None
        scope = current_scope()
        if scope is not None:
            scope.step = "send"
            scope.before_send()
        super().send(data)

    def getresponse(self) -> Any:
        _step(current_scope(), "response")
        return super().getresponse()


class _DeadlineHTTPSConnection(_DeadlineConnection, HTTPSConnection):
    tls = True


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)[ \t]*\r\n", re.IGNORECASE)


def _content_length(head: bytes) -> int:
    match = _CONTENT_LENGTH.search(head)
    return int(match.group(1)) if match else 0


def _step(scope: DeadlineScope | None, step: str) -> None:
    if scope is not None:
        scope.step = step


_adapter_lock = threading.Lock()
_adapter: _DeadlineAdapter | None = None


def adapter() -> _DeadlineAdapter:
    """One adapter, thread-safe, keeping connections alive per target host.

    The adapter is used directly, not through a Session: Session.send() reads a redirect's
    whole body (decompressed) to release its connection, which a receiver could make
    arbitrarily large.
    """
    global _adapter
    with _adapter_lock:
        if _adapter is None:
            _adapter = _DeadlineAdapter(
                pool_connections=POOL_HOSTS, pool_maxsize=POOL_PER_HOST, max_retries=0
            )
        return _adapter


def _as_given(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def prepare(callback: Callback) -> requests.PreparedRequest:
    headers = {**callback.headers, "Accept-Encoding": "identity"}
    request = requests.PreparedRequest()
    request.prepare(
        method="POST",
        url=callback.url,
        headers=headers,
        data=callback.body,
        # With webhookAuth, a no-op auth keeps requests from replacing it with the URL's
        # user:password; without, the URL's user:password is sent as Basic auth.
        auth=_as_given if "Authorization" in callback.headers else None,
    )
    return request


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    return list(SCHEMES)


@hookimpl(trylast=True)
def scheduler_deliver(callback: Callback, deadline: float) -> DeliveryReport | None:
    if urlsplit(callback.url).scheme.lower() not in SCHEMES:
        return None
    return post(callback, deadline)


# A kept-alive connection the receiver closed as we reused it fails before any answer:
# the request goes again, on a fresh connection, this many times at most (at-least-once
# delivery allows the repeat, and the deadline still bounds it).
STALE_CONNECTION_RETRIES = 2


def post(callback: Callback, deadline: float) -> DeliveryReport:
    """POST `callback` and read the answer, all before `deadline` (time.monotonic())."""
    with DeadlineScope(_watchdog, deadline) as scope:
        try:
            response = _send(callback, deadline, scope)
            try:
                # Raw bytes: no decompression, so a small gzip bomb stays small.
                body = response.raw.read(MAX_RESPONSE_BYTES, decode_content=False) or b""
                if time.monotonic() > deadline:
                    raise DeadlineExceeded("the answer was not read in time")
            except BaseException:
                response.close()
                raise
            if len(body) < MAX_RESPONSE_BYTES:
                response.raw.release_conn()  # fully read: keep the connection alive
            else:
                response.close()  # the rest is never read, so the connection is spent
        except Exception as exc:  # every failure mode is a failed attempt with a reason
            return _failure(exc, scope)
    return DeliveryReport.answered(
        response.status_code, dict(response.headers), body, sent_at=scope.sent_at
    )


def _send(callback: Callback, deadline: float, scope: DeadlineScope) -> requests.Response:
    retries = STALE_CONNECTION_RETRIES
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("no time left")
        scope.reused = False
        try:
            return adapter().send(
                prepare(callback),
                stream=True,
                timeout=(remaining, remaining),
                verify=True,
                proxies={},
            )
        except requests.exceptions.ConnectionError as exc:
            if not (scope.reused and retries > 0 and _closed_by_peer(exc)):
                raise
            retries -= 1


def _closed_by_peer(exc: BaseException) -> bool:
    return any(
        isinstance(e, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
        for e in error_chain(exc)
    )


def _failure(exc: Exception, scope: DeadlineScope) -> DeliveryReport:
    if _is_timeout(exc) or time.monotonic() >= scope.deadline - 0.01:
        step = TIMEOUT_STEPS.get(scope.step, "no complete response")
        return DeliveryReport.failed(step, timed_out=True, sent_at=scope.sent_at)
    return DeliveryReport.failed(scope.failure or describe_error(exc), sent_at=scope.sent_at)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.Timeout | DeadlineExceeded):
        return True
    return isinstance(root_cause(exc), TimeoutError | socket.timeout)


def error_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors under it, outermost first, through requests' and urllib3's
    wrappers (MaxRetryError.reason, ProtocolError's second argument, `raise ... from`)."""
    chain = [exc]
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            inner = exc.__cause__
        if inner is None or any(inner is seen for seen in chain):
            return chain
        chain.append(inner)
        exc = inner


def root_cause(exc: BaseException) -> BaseException:
    return error_chain(exc)[-1]


def describe_error(exc: BaseException) -> str:
    """A failure as a few words and the innermost error, never the URL (it may carry a
    token in its query)."""
    chain = error_chain(exc)
    root = chain[-1]
    text = f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
    if any(isinstance(e, ProtocolError) for e in chain):
        text = f"connection aborted: {text}"  # the connection broke mid-exchange
    if isinstance(root, ssl.SSLError) or isinstance(exc, requests.exceptions.SSLError):
        return f"tls error: {text}"
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return f"invalid url: {type(exc).__name__}"
    if isinstance(root, OSError | http.client.HTTPException) or isinstance(
        exc, requests.exceptions.ConnectionError
    ):
        return f"connection error: {text}"
    return f"delivery error: {text}"
