"""A loopback receiver for fault tests: it counts every callback by task id and attempt,
answers as each task's payload asks, and knows which calls are still in flight.

A task's payload is an object; these keys steer the answer to its callback:
- `delay`: seconds to wait before answering (default 0);
- `fail`: answer 500 to attempts 1..fail, 200 afterwards (default 0).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.waiting import wait_until


@dataclass
class Call:
    task_id: str
    attempt: int
    status: int  # what the receiver decided to answer
    arrived: float  # time.monotonic() when the request was read
    delay: float
    answered: float | None = None  # when the answer was written; None if not (yet)


class CountingReceiver:
    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._in_flight: set[int] = set()  # indexes into _calls
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the scheduler keeps connections alive

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._serve(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # Several dispatchers open select_size connections each at once.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived = time.monotonic()
        task_id = handler.headers.get("X-Scheduler-Task-Id") or ""
        attempt = int(handler.headers.get("X-Scheduler-Attempt") or 0)
        try:
            payload = json.loads(body).get("payload")
        except (ValueError, AttributeError):
            payload = None
        plan = payload if isinstance(payload, dict) else {}
        delay = float(plan.get("delay", 0))
        status = 500 if attempt <= int(plan.get("fail", 0)) else 200
        call = Call(task_id, attempt, status, arrived, delay)
        with self._lock:
            self._calls.append(call)
            index = len(self._calls) - 1
            self._in_flight.add(index)
        try:
            if delay:
                time.sleep(delay)
            answer = b"ok" if status == 200 else b"not now"
            handler.send_response(status)
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
            handler.wfile.flush()
            call.answered = time.monotonic()
        except OSError:
            pass  # the scheduler went away (killed, or gave up): not answered
        finally:
            with self._lock:
                self._in_flight.discard(index)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._calls)

    def seen(self) -> set[str]:
        """Task ids called at least once."""
        return {c.task_id for c in self.calls()}

    def per_task(self) -> Counter[str]:
        return Counter(c.task_id for c in self.calls())

    def attempts_seen(self) -> dict[str, list[int]]:
        """Every attempt number the receiver saw, by task id, in arrival order."""
        seen: dict[str, list[int]] = {}
        for call in self.calls():
            seen.setdefault(call.task_id, []).append(call.attempt)
        return seen

    def answered_2xx(self) -> set[tuple[str, int]]:
        """(task id, attempt) of every call the receiver answered with a 2xx."""
        return {
            (c.task_id, c.attempt)
            for c in self.calls()
            if c.answered is not None and 200 <= c.status < 300
        }

    def in_flight_remaining(self) -> list[float]:
        """For each call still being answered, the seconds left before its answer."""
        now = time.monotonic()
        with self._lock:
            calls = [self._calls[i] for i in self._in_flight]
        return [c.arrived + c.delay - now for c in calls]

    def wait_for_tasks(self, task_ids: set[str], timeout: float) -> None:
        wait_until(
            lambda: task_ids <= self.seen(),
            timeout,
            interval=0.1,
            message=f"for the receiver to see all {len(task_ids)} tasks",
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
