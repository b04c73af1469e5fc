"""Small real HTTP servers on loopback for the client's tests.

- `FakeApi`: answers routes the test gives it (method, path) and records every request,
  for the endpoints other branches are building (PATCH, bulk verbs, stats, openapi).
- `FlakyProxy`: sits in front of a real server and misbehaves on the first requests as
  told (drops the connection before or after forwarding, answers 503/502), then
  forwards; it counts what it saw, so a test can tell how often the client sent a
  request.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Answer]


def json_answer(status: int, value: Any, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(value).encode(),
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Base:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k: v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with outer.lock:
                    outer.seen.append(seen)
                answer = outer.answer(seen)
                if answer is None:  # drop: close without a byte of answer
                    self.close_connection = True
                    return
                status, headers, body = answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def answer(self, seen: Seen) -> Answer | None:
        raise NotImplementedError

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for s in self.seen if (s.method, s.path) == (method, path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeApi(_Base):
    """Answers `routes[(method, path)]`; anything else is the API's JSON 404."""

    def __init__(self, routes: dict[tuple[str, str], Route] | None = None) -> None:
        self.routes: dict[tuple[str, str], Route] = dict(routes or {})
        super().__init__()

    def answer(self, seen: Seen) -> Answer | None:
        route = self.routes.get((seen.method, seen.path))
        if route is None:
            return json_answer(
                404, {"error": {"code": "not_found", "message": "No such resource.", "details": {}}}
            )
        return route(seen)


class FlakyProxy(_Base):
    """Forwards to `upstream` once the `faults` are used up, one per request, in order:

    - ``"drop"``: close the connection without forwarding or answering;
    - ``"drop-after"``: forward (the upstream acts), then close without answering;
    - ``"503"`` / ``"502"`` / ``"504"``: answer that status (503 in the API's JSON shape
      with ``Retry-After: 0``, 502 as a proxy's HTML page) without forwarding;
    - ``"503-retry-after:N"``: a 503 with ``Retry-After: N``.
    """

    def __init__(self, upstream: str, faults: list[str] | None = None) -> None:
        self.upstream = upstream
        self.faults = list(faults or [])
        self.forwarded: Counter[tuple[str, str]] = Counter()
        self._session = requests.Session()
        super().__init__()

    def answer(self, seen: Seen) -> Answer | None:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == "drop":
            return None
        if fault is not None and fault.startswith("503"):
            retry_after = fault.partition(":")[2] or "0"
            return json_answer(
                503,
                {"error": {"code": "unavailable", "message": "Try again.", "details": {}}},
                {"Retry-After": retry_after},
            )
        if fault in {"502", "504"}:
            page = f"<html><body><h1>{fault} Bad Gateway</h1></body></html>".encode()
            return int(fault), {"Content-Type": "text/html"}, page
        forwarded = self._forward(seen)
        return None if fault == "drop-after" else forwarded

    def _forward(self, seen: Seen) -> Answer:
        with self.lock:
            self.forwarded[(seen.method, seen.path)] += 1
        headers = {
            k: v
            for k, v in seen.headers.items()
            if k.lower() not in {"host", "content-length", "connection"}
        }
        query = "&".join(f"{k}={v}" for k, values in seen.query.items() for v in values)
        response = self._session.request(
            seen.method,
            self.upstream + seen.path + (f"?{query}" if query else ""),
            data=seen.body or None,
            headers=headers,
            timeout=15,
        )
        kept = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in {"content-length", "connection", "transfer-encoding"}
        }
        return response.status_code, kept, response.content

    def close(self) -> None:
        super().close()
        self._session.close()
