"""A real `scheduler serve` for the HTTP-layer security tests, and raw-socket HTTP."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.database import sqlite_url
from tests.support.processes import SchedulerProcess

STARTUP_TIMEOUT = 60.0  # two cores shared with other suites: Python and Flask start slowly


@contextlib.contextmanager
def served(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[SchedulerProcess]:
    """`scheduler serve --port 0 --no-dispatcher <args>` on a SQLite file of its own,
    stopped afterwards; its output is printed (shown when the test failed)."""
    folder = tmp_path / f"db{time.monotonic_ns()}"
    folder.mkdir()
    process = SchedulerProcess(
        ["serve", "--port", "0", "--no-dispatcher", *args], sqlite_url(folder), env
    )
    try:
        process.wait_listening(STARTUP_TIMEOUT)
        yield process
    finally:
        process.stop()
        print(process.output)
        process.log_path.unlink(missing_ok=True)


def address(process: SchedulerProcess) -> tuple[str, int]:
    assert process.base_url is not None
    host, port = process.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lowercased names
    body: bytes = b""
    closed: bool = False  # the server closed the connection after it


def read_response(sock: socket.socket, timeout: float) -> RawResponse:
    """One HTTP response from `sock` (Content-Length bodies), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock, deadline, "the response head")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += _recv(sock, deadline, "the response body")
    closed = False
    if headers.get("connection", "").lower() == "close":
        closed = wait_closed(sock, max(0.1, deadline - time.monotonic()))
    return RawResponse(status, headers, body[:length], closed)


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed `sock` (EOF or reset), False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:  # reset
            return True
    return False


def _recv(sock: socket.socket, deadline: float, what: str) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise AssertionError(f"no complete answer: {what} did not arrive in time")
    sock.settimeout(remaining)
    try:
        chunk = sock.recv(65536)
    except TimeoutError:
        raise AssertionError(f"no complete answer: {what} did not arrive in time") from None
    if not chunk:
        raise AssertionError(f"the server closed the connection before {what}")
    return chunk
