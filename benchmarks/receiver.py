"""A callback receiver that records when each POST arrived: `python -m benchmarks.receiver`.

Every POST is timestamped with `time.time()` as soon as its request line and headers are
parsed, before the body is read, and answered 204 at once. `GET /arrivals?after=N` returns
the records from index N on, as `{"next": M, "arrivals": [[task_id, attempt, t], ...]}`.
The bound port is printed on stdout as `PORT <n>`; nothing else goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TASK_ID_HEADER = "X-Scheduler-Task-Id"
ATTEMPT_HEADER = "X-Scheduler-Attempt"


class ArrivalLog:
    """Append-only (task id, attempt, arrival time) records, safe across handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[tuple[str, int, float]] = []

    def add(self, task_id: str, attempt: int, arrived: float) -> None:
        with self._lock:
            self._records.append((task_id, attempt, arrived))

    def since(self, index: int) -> tuple[int, list[tuple[str, int, float]]]:
        with self._lock:
            return len(self._records), self._records[index:]


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, ArrivalHandler)
        self.arrivals = ArrivalLog()


class ArrivalHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReceiverServer

    def do_POST(self) -> None:
        arrived = time.time()  # first: headers are parsed, the body is not read yet
        task_id = self.headers.get(TASK_ID_HEADER, "")
        attempt = _int_or_zero(self.headers.get(ATTEMPT_HEADER))
        self._discard_body()
        self.server.arrivals.add(task_id, attempt, arrived)
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/arrivals":
            self._send_json(404, {"error": "not found"})
            return
        after = _int_or_zero(parse_qs(url.query).get("after", ["0"])[0])
        count, records = self.server.arrivals.since(after)
        self._send_json(200, {"next": count, "arrivals": records})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass  # one line per request would cost more than the request

    def _discard_body(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                self.rfile.read(size + 2)
                if size == 0:
                    return
        length = _int_or_zero(self.headers.get("Content-Length"))
        if length:
            self.rfile.read(length)

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _int_or_zero(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.receiver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = ReceiverServer((args.host, args.port))
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
