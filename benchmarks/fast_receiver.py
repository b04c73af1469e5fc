"""A fast callback receiver for throughput runs: `python -m benchmarks.fast_receiver`.

One asyncio event loop, HTTP/1.1 with keep-alive (TCP_NODELAY is set by asyncio on every
accepted socket), no framework: every POST is answered `200` with an empty body as soon as
its body has arrived, and counted. `GET /count` answers `{"posts": n}`. The bound port is
printed on stdout as `PORT <n>`. A few tens of microseconds of CPU per request, so that it
is not the limit of what it measures (the benchmarks report its CPU to show it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 65536


class Counter:
    posts = 0


class HookProtocol(asyncio.Protocol):
    """Parses pipelined or split requests from one connection's bytes."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            consumed = self._one_request()
            if not consumed:
                return
            self.buffer = self.buffer[consumed:]

    def _one_request(self) -> int:
        """Answer the first complete request in the buffer; return the bytes it took (0:
        not complete yet)."""
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._close_with(BAD)
            return 0
        head = self.buffer[:end].lower()
        body_end = self._body_end(head, end + 4)
        if body_end < 0:
            if body_end == -2:
                self._close_with(BAD)
            return 0
        method, _, rest = head.partition(b" ")
        path = rest.split(b" ", 1)[0]
        if method == b"post":
            Counter.posts += 1
            self.transport.write(OK)
        elif method == b"get" and path == b"/count":
            body = json.dumps({"posts": Counter.posts}).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        else:
            self.transport.write(NOT_FOUND)
        if b"\r\nconnection: close" in head:
            self.transport.close()
        return body_end

    def _body_end(self, head: bytes, start: int) -> int:
        """Where the request's body ends in the buffer; -1 while incomplete, -2 if bad."""
        if b"\r\ntransfer-encoding: chunked" in head:
            pos = start
            while True:
                line_end = self.buffer.find(b"\r\n", pos)
                if line_end < 0:
                    return -1
                try:
                    size = int(self.buffer[pos:line_end].split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    return -2
                pos = line_end + 2 + size + 2
                if size == 0:  # no trailers are sent by the clients measured here
                    return pos if len(self.buffer) >= pos else -1
                if len(self.buffer) < pos:
                    return -1
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            return start
        line_end = head.find(b"\r\n", at + 2)
        value = head[at + 17 : line_end if line_end >= 0 else len(head)]
        try:
            length = int(value.strip())
        except ValueError:
            return -2
        return start + length if len(self.buffer) >= start + length else -1

    def _close_with(self, answer: bytes) -> None:
        assert self.transport is not None
        self.transport.write(answer)
        self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HookProtocol, host, port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fast_receiver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
