"""/metrics of a `scheduler worker`, on an HTTP server of its own.

A worker has no API; `--metrics-port` gives it this small server, with the API server's
defences (serving.create_server: connection limit, idle and read timeouts, header limit).
It answers `GET /metrics` and 404 to anything else. Its event loop runs on one thread,
which also closes it, so no socket is touched from two threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore

from scheduler_core import __version__
from scheduler_core.plugins.metrics import CONTENT_TYPE, Metrics
from scheduler_core.serving import _socket_map, create_server, drain, stop_listening
from scheduler_core.settings import Settings

log = logging.getLogger(__name__)

THREADS = 2  # scrapes are rare and quick
LOOP_STEP_S = 0.2  # how soon the loop sees a stop request
CLOSE_WAIT_S = 2.0  # a scrape in progress at stop gets this long to finish

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def metrics_app(metrics: Metrics) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app: GET or HEAD /metrics in the Prometheus text format, else 404/405."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _plain(start_response, "404 Not Found", b"not found: try /metrics\n")
        method = environ.get("REQUEST_METHOD")
        if method not in {"GET", "HEAD"}:
            return _plain(start_response, "405 Method Not Allowed", b"GET only\n", "GET, HEAD")
        body = metrics.exposition()
        start_response(
            "200 OK",
            [
                ("Content-Type", CONTENT_TYPE),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [] if method == "HEAD" else [body]

    return app


def _plain(
    start_response: StartResponse, status: str, body: bytes, allow: str | None = None
) -> list[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if allow:
        headers.append(("Allow", allow))
    start_response(status, headers)
    return [body]


class MetricsServer:
    """Serve `metrics` on host:port from a background thread until `close()`.

    Raises OSError or ValueError (from create_server) when it cannot listen.
    """

    def __init__(self, metrics: Metrics, settings: Settings, host: str, port: int):
        self._server: Any = create_server(
            metrics_app(metrics),
            settings,
            host,
            port,
            THREADS,
            ident=f"scheduler-core/{__version__}",
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.effective_host, self._server.effective_port
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/metrics"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop listening, let a scrape in progress finish (briefly), close everything."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _serve(self) -> None:
        socket_map = _socket_map(self._server)
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=LOOP_STEP_S, map=socket_map, count=1, use_poll=True)
        except Exception:  # the worker goes on delivering without its metrics
            log.exception("the metrics server failed; /metrics is no longer served")
        finally:
            stop_listening(self._server)
            drain(self._server, timeout=CLOSE_WAIT_S)
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=CLOSE_WAIT_S)
            wasyncore.close_all(socket_map)
