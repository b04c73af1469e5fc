"""Waitress for `scheduler serve`: listen, hold up under abuse, and stop without stranding
clients.

Waitress reads requests on one event loop and hands only complete ones to its threads, so an
idle or slow connection costs a socket, not a thread; what it must not cost is everyone
else's access. `create_server` adds, on top of waitress:

- a connection limit that cannot lock new clients out: when it is reached, the connection
  that has been idle (or sending a request) the longest is closed to admit the new one, so
  a crowd of idle or trickling connections never fills the server; only connections whose
  requests are being answered are never closed for a newcomer;
- an idle timeout (a connection with nothing in progress is closed after it) and a read
  timeout: a request's head and body must arrive within it of the request's first byte,
  however steadily the bytes trickle (slowloris), or it is answered 408 and closed;
  checked four times a second, not every 30 s as waitress's own clean-up;
- the body limit on the wire: a Content-Length over SCHEDULER_MAX_BODY_BYTES is answered
  413 as soon as the head is read, before any body, authentication or 100 Continue; a
  chunked body as soon as its decoded size passes the limit;
- waitress's own errors (400, 408, 413, 431, 501) in the API's JSON error shape;
- poll() rather than select(), which cannot watch more than 1024 sockets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import time
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error, RequestEntityTooLarge

from scheduler_core.settings import Settings

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 0.25
MAX_HEADER_BYTES = 64 * 1024
# Open files besides client connections: database pool, delivery sockets, logs, pipes.
RESERVED_FILES = 256

_ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    413: "payload_too_large",
    431: "headers_too_large",
    501: "not_implemented",
}
_ERROR_MESSAGES = {
    408: "The request was not received in time.",
    413: "The request body is over the size limit.",
    431: "The request head is over the size limit.",
}


class RequestTimeout(Error):
    code = 408
    reason = "Request Timeout"


class JsonErrorTask(ErrorTask):
    """Waitress's answer to a request it refuses itself, in the API's error shape."""

    def execute(self) -> None:
        error: Any = self.request.error  # type: ignore[attr-defined]
        message = _ERROR_MESSAGES.get(error.code) or f"{error.reason}: {error.body}"[:200]
        code = _ERROR_CODES.get(
            error.code, "internal_error" if error.code >= 500 else "bad_request"
        )
        shape = {"error": {"code": code, "message": message, "details": {}}}
        body = json.dumps(shape, separators=(",", ":")).encode() + b"\n"  # as Flask's
        self.status = f"{error.code} {error.reason}"
        self.response_headers = [*self.response_headers, ("Content-Type", "application/json")]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class LimitedRequestParser(HTTPRequestParser):
    """Refuses a body over `max_body` bytes as soon as that is known: a Content-Length
    when the head ends, a chunked body when its decoded size passes the limit."""

    max_body = 0  # set per server, see _parser_class

    def received(self, data: bytes) -> int:
        if self.completed:
            return 0
        consumed: int = super().received(data)
        received_body = len(self.body_rcv) if self.chunked and self.body_rcv is not None else 0
        too_large = max(self.content_length or 0, received_body) > self.max_body
        if self.error is None and self.headers_finished and too_large:
            self.error = RequestEntityTooLarge(f"exceeds max_body of {self.max_body}")
            self.completed = True
        if self.error is not None:
            self.expect_continue = False  # no 100 Continue: the body is not wanted
            return len(data)  # what follows is body, or garbage: the connection closes
        return consumed


def _parser_class(max_body: int) -> type[LimitedRequestParser]:
    return type("RequestParser", (LimitedRequestParser,), {"max_body": max_body})


class GuardedChannel(HTTPChannel):
    """A connection that remembers when the request it is receiving began."""

    error_task_class = JsonErrorTask
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        result: bool = super().received(data)
        if self.request is None:
            self.request_started = None
        return result

    def service(self) -> None:
        super().service()
        if self.request is not None:  # read before its turn came: its time starts now
            self.request_started = time.time()

    def busy(self) -> bool:
        """Answering a request, or closing: neither timed out nor evicted."""
        return bool(self.requests or self.will_close or self.close_when_flushed)

    def waiting_since(self) -> float:
        """Since when this connection has been waiting for its client: the start of the
        request being received, else the last byte in or out."""
        if self.request is not None and self.request_started is not None:
            return self.request_started
        return float(self.last_activity)

    def time_out_request(self) -> None:
        """Answer 408 and close: the request did not arrive within the read timeout."""
        with self.requests_lock:  # type: ignore[attr-defined]
            requests: Any = self.requests
            if requests or self.request is None:
                return
            self.request.close()
            self.request = None
            self.request_started = None
            refused = self.parser_class(self.adj)
            refused.parse_header(b"GET / HTTP/1.0\r\n")
            refused.error = RequestTimeout("the request was not received in time")
            refused.completed = True
            requests.append(refused)
            self.server.add_task(self)  # type: ignore[arg-type]


class GuardedServer(TcpWSGIServer):
    channel_class = GuardedChannel
    read_timeout_s = 30.0
    idle_timeout_s = 30.0
    next_maintenance = 0.0
    at_limit = False

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_maintenance:
            self.next_maintenance = now + MAINTENANCE_INTERVAL_S
            self.maintenance(now)
        if not self.accepting:
            return False
        socket_map: dict[int, Any] = self._map  # type: ignore[attr-defined]
        if len(socket_map) <= self.adj.connection_limit:  # the map holds listeners too
            self._note_limit(False)
            return True
        live = self._live_channels(socket_map)
        if len(live) < self.adj.connection_limit:
            self._note_limit(False)
            return True
        # Full. Accept all the same while some connection is only waiting for its client:
        # handle_accept closes the one that has waited the longest. Otherwise every
        # connection is being answered, and newcomers wait in the listen backlog.
        self._note_limit(True)
        return any(not channel.requests for channel in live)

    def handle_accept(self) -> None:
        super().handle_accept()
        socket_map: dict[int, Any] = self._map  # type: ignore[attr-defined]
        live = self._live_channels(socket_map)
        if len(live) <= self.adj.connection_limit:
            return
        newest = max(live, key=lambda channel: channel.creation_time)
        waiting = [c for c in live if not c.requests and c is not newest]
        if waiting:
            min(waiting, key=GuardedChannel.waiting_since).will_close = True

    @staticmethod
    def _live_channels(socket_map: dict[int, Any]) -> list[GuardedChannel]:
        """Client connections, but those already closing."""
        return [
            channel
            for channel in socket_map.values()
            if isinstance(channel, GuardedChannel)
            and not (channel.will_close or channel.close_when_flushed)
        ]

    def _note_limit(self, reached: bool) -> None:
        if reached and not self.at_limit:
            log.warning(
                "%d connections open, the connection limit: closing the longest-waiting "
                "idle or slow connections to admit new ones",
                self.adj.connection_limit,
            )
        self.at_limit = reached

    def maintenance(self, now: float) -> None:
        idle_cutoff = now - self.idle_timeout_s
        read_cutoff = now - self.read_timeout_s
        active: dict[int, GuardedChannel] = self.active_channels  # type: ignore[assignment]
        for channel in list(active.values()):
            if channel.busy():
                continue
            if channel.request is not None and (
                (channel.request_started or now) < read_cutoff
                or channel.last_activity < idle_cutoff
            ):
                channel.time_out_request()
            elif channel.request is None and channel.last_activity < idle_cutoff:
                channel.will_close = True


def create_server(
    app: Any, settings: Settings, host: str, port: int, threads: int, ident: str
) -> Any:
    """A waitress server for `app` on host:port with the defences above. Raises OSError
    or ValueError when it cannot listen."""
    other_files = RESERVED_FILES + threads + settings.delivery_threads
    connection_limit = _allow_open_files(settings.connection_limit, other_files)
    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        ident=ident,
        connection_limit=connection_limit,
        # The body limit is LimitedRequestParser's (decoded bytes); waitress's own counts
        # raw bytes, chunk framing included: a backstop at twice the limit.
        max_request_body_size=2 * settings.max_body_bytes + 65536,
        max_request_header_size=MAX_HEADER_BYTES,
        asyncore_use_poll=True,
    )
    socket_map: dict[int, Any] = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    parser = _parser_class(settings.max_body_bytes)
    attributes = {
        "read_timeout_s": settings.read_timeout_s,
        "idle_timeout_s": settings.idle_timeout_s,
    }
    channel_class = type("Channel", (GuardedChannel,), {"parser_class": parser})
    server_class = type("Server", (GuardedServer,), {"channel_class": channel_class, **attributes})
    servers = [
        server_class(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        for sockinfo in adj.listen
    ]
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[0].log_info)


def _allow_open_files(connection_limit: int, other_files: int) -> int:
    """Raise the open-files limit to fit `connection_limit` connections and `other_files`,
    as far as the hard limit allows; the connection limit that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connection_limit + other_files
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - other_files)
        log.warning(
            "the open-files limit (%d) leaves room for %d connections, not %d: "
            "using %d (raise `ulimit -n` for more)",
            soft,
            fitted,
            connection_limit,
            fitted,
        )
        return fitted
    return connection_limit


def stop_listening(server: Any) -> None:
    """Close only the listening socket(s), so new clients are refused at once while the
    dispatcher finishes its deliveries; the server's wake-up pipe stays open for drain()."""
    for channel in list(_socket_map(server).values()):
        if isinstance(channel, BaseWSGIServer):  # a listener, not a client connection
            with contextlib.suppress(OSError):
                wasyncore.dispatcher.close(channel)


def drain(server: Any, timeout: float) -> None:
    """Run the event loop until requests already received are answered, or `timeout`."""
    socket_map = _socket_map(server)

    def busy() -> bool:
        return any(
            getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
            for channel in list(socket_map.values())
        )

    deadline = time.monotonic() + timeout
    while busy() and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=socket_map, count=1, use_poll=True)
    if busy():
        log.warning("stopping with API requests still unanswered after %.0fs", timeout)


def _socket_map(server: Any) -> dict[int, Any]:
    # A single listener keeps its map as `_map`; several (MultiSocketServer) as `map`.
    socket_map = getattr(server, "_map", None)
    if socket_map is None:
        socket_map = getattr(server, "map", None)
    return socket_map if socket_map is not None else {}
