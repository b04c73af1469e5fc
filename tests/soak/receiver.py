"""A fast loopback receiver for the soak, run as its own process so that it shares no GIL
with the scheduler processes or with the checker.

    python tests/soak/receiver.py --seed 1 --fail-rate 0.1 --calls-file calls.tsv

It answers every POST at once: 500 to a seeded random share of calls (`--fail-rate`), 200
to the others. Which calls fail depends only on the seed, the task id and the attempt
number, so a run is reproducible whatever order the calls arrive in. It prints
`listening on 127.0.0.1:<port>` on stdout, then records one line per call in memory:

    <time.time() at arrival> TAB <X-Scheduler-Task-Id> TAB <X-Scheduler-Attempt> TAB <status>

`GET /dump` writes every line so far to `--calls-file` and answers the count; `GET /stats`
answers `{"calls": n, "failed": m}`. SIGTERM or SIGINT exits. Stdlib only: asyncio with a
small HTTP/1.1 parser that keeps connections alive, as the scheduler's delivery threads do.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import time

MAX_HEADER_BYTES = 64 * 1024


def fails(seed: int, task_id: str, attempt: str, fail_rate: float) -> bool:
    """Whether the receiver answers 500 to this call: seeded, order independent."""
    if fail_rate <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{task_id}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fail_rate * 2**64


def _response(status: int, body: bytes, content_type: str = "text/plain") -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


OK = _response(200, b"ok")
FAILED = _response(500, b"soak failure")


class Recorder:
    def __init__(self, seed: int, fail_rate: float, calls_file: str | None):
        self.seed = seed
        self.fail_rate = fail_rate
        self.calls_file = calls_file
        self.lines: list[str] = []
        self.failed = 0

    def answer(self, method: str, target: str, headers: dict[bytes, bytes]) -> bytes:
        if method == "POST":
            task_id = headers.get(b"x-scheduler-task-id", b"-").decode("latin-1")
            attempt = headers.get(b"x-scheduler-attempt", b"-").decode("latin-1")
            failed = fails(self.seed, task_id, attempt, self.fail_rate)
            status = 500 if failed else 200
            self.failed += failed
            self.lines.append(f"{time.time():.6f}\t{task_id}\t{attempt}\t{status}\n")
            return FAILED if failed else OK
        if target == "/stats":
            stats = {"calls": len(self.lines), "failed": self.failed}
            return _response(200, json.dumps(stats).encode(), "application/json")
        if target == "/dump" and self.calls_file:
            with open(self.calls_file, "w") as out:
                out.writelines(self.lines)
            return _response(200, str(len(self.lines)).encode())
        return _response(404, b"not found")


class HttpConnection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies: all the scheduler sends."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            del self.buffer[: end + 4 + length]
            method, target = (lines[0].decode("latin-1").split(" ") + ["", ""])[:2]
            self.transport.write(self.recorder.answer(method, target, headers))
            if headers.get(b"connection", b"").lower() == b"close":
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(args: argparse.Namespace) -> None:
    recorder = Recorder(args.seed, args.fail_rate, args.calls_file)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpConnection(recorder), "127.0.0.1", args.port, backlog=4096
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fail-rate", type=float, default=0.1)
    parser.add_argument("--calls-file", default=None)
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
