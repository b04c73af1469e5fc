"""Built-in delivery: an HTTP POST to the task's webhook URL.

The callback timeout is a total deadline: connect, send and the bounded response read
together. Redirects are not followed; at most MAX_RESPONSE_BYTES of the answer's body is
read, and a status line plus headers longer than MAX_HEADER_BYTES fail the attempt.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from scheduler_core import __version__
from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import DeliveryOutcome
from scheduler_core.plugins.socket_deadline import DeadlineScope, SocketWatchdog, register_current

if TYPE_CHECKING:
    import socket

    from scheduler_core.models import ClaimedTask
    from scheduler_core.settings import Settings

SCHEMES = ("http", "https")
USER_AGENT = f"scheduler-core/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024
# http.client alone lets 100 header lines of 64 KiB through: 6 MiB, ~50 MB once parsed.
MAX_HEADER_BYTES = 64 * 1024
ERROR_BODY_CHARS = 200

_watchdog = SocketWatchdog()


class ResponseHeadersTooLarge(http.client.HTTPException):
    pass


class _HeaderBudget:
    """The response's reader while its head is parsed: MAX_HEADER_BYTES of lines in all."""

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


class _WatchedHTTPConnection(HTTPConnection):
    response_class = _BoundedResponse

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        register_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        register_current(self.sock)  # a kept-alive connection is reused without _new_conn
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    response_class = _BoundedResponse

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        register_current(sock, before_tls=True)  # the handshake is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        register_current(self.sock)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


_sessions = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per delivery thread: requests sessions are not thread-safe."""
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no .netrc credentials
        adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=1, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _sessions.session = session
    return session


def callback_headers(task: ClaimedTask) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "X-Scheduler-Task-Id": task.id,
        "X-Scheduler-Attempt": str(task.attempt),
    }
    if task.webhook_auth is not None:
        headers["Authorization"] = task.webhook_auth
    return headers


def _as_given(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def callback_body(task: ClaimedTask) -> bytes:
    # The payload is spliced in as stored: no second parse, key order kept.
    return (
        f'{{"taskId": {json.dumps(task.id)}, '
        f'"executeAt": {json.dumps(format_timestamp(task.execute_at))}, '
        f'"attempt": {task.attempt}, "payload": {task.payload_json}}}'
    ).encode()


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_retry_after(value: str | None, now: datetime | None = None) -> int | None:
    """Retry-After as milliseconds: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, int("²") raises
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - (now or datetime.now(UTC))
    return max(0, int(delta.total_seconds() * 1000))


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    return list(SCHEMES)


@hookimpl(trylast=True)
def scheduler_deliver(
    task: ClaimedTask, deadline: float, settings: Settings
) -> DeliveryOutcome | None:
    if urlsplit(task.webhook_url).scheme.lower() not in SCHEMES:
        return None
    return post_callback(task, deadline)


def post_callback(task: ClaimedTask, deadline: float) -> DeliveryOutcome:
    started = time.monotonic()
    budget_s = max(0.0, deadline - started)

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    with DeadlineScope(_watchdog, deadline):
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            response = _session().post(
                task.webhook_url,
                data=callback_body(task),
                headers=callback_headers(task),
                # A no-op auth stops requests replacing webhookAuth with the URL's user:pass.
                auth=_as_given if task.webhook_auth is not None else None,
                timeout=(remaining, remaining),
                allow_redirects=False,
                stream=True,
            )
            try:
                # Raw bytes: no decompression, so a small gzip bomb stays small.
                body = response.raw.read(MAX_RESPONSE_BYTES, decode_content=False) or b""
                if time.monotonic() > deadline:
                    raise requests.exceptions.ReadTimeout("deadline passed")
            except BaseException:
                response.close()
                raise
            if len(body) < MAX_RESPONSE_BYTES:
                response.raw.release_conn()  # fully read: keep the connection alive
            else:
                response.close()  # the rest is never read, so the connection is spent
        except Exception as exc:  # every failure mode is a failed attempt with a reason
            timed_out = time.monotonic() >= deadline - 0.01
            return DeliveryOutcome(
                ok=False,
                error=describe_error(exc, timed_out, budget_s),
                duration_ms=elapsed_ms(),
            )
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryOutcome(ok=True, status_code=status, duration_ms=elapsed_ms())
    return DeliveryOutcome(
        ok=False,
        status_code=status,
        error=describe_status(status, body),
        duration_ms=elapsed_ms(),
        retry_after_ms=parse_retry_after(response.headers.get("Retry-After")),
    )


def describe_status(status: int, body: bytes) -> str:
    message = f"HTTP {status}"
    if 300 <= status < 400:
        message += " (redirects are not followed)"
    snippet = body[:ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
    if snippet:
        message += f": {' '.join(snippet.split())}"
    return message


def describe_error(exc: Exception, timed_out: bool, budget_s: float) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"timeout: could not connect within {budget_s:.1f} s"
    if timed_out or isinstance(exc, requests.exceptions.Timeout):
        return f"timeout: no complete response within {budget_s:.1f} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"tls error: {_short(text)}"
    if "NameResolutionError" in text or "Name or service not known" in text:
        return f"dns error: {_short(text)}"
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection error: {_short(text)}"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return f"invalid url: {_short(text)}"
    return f"delivery error: {type(exc).__name__}: {_short(text)}"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
