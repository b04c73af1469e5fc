"""Misbehaving HTTP servers on raw sockets, for what http.server cannot do politely.

Each server accepts on 127.0.0.1, reads the request (headers and Content-Length body),
then misbehaves in its own way. `close()` stops accepting and wakes every handler.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class RawServer:
    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.port: int = self._listener.getsockname()[1]
        self.closing = threading.Event()
        self.requests = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            if not self._read_request(conn):
                return
            with self._lock:
                self.requests += 1
            self.respond(conn)
        except OSError:
            pass  # the client gave up on us, as it should
        finally:
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def respond(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closing.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class HeaderTrickler(RawServer):
    """Sends a valid 200 response one header byte at a time, `every` seconds apart."""

    def __init__(self, every: float = 0.3) -> None:
        self.every = every
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Padding: " + b"p" * 200 + b"\r\n\r\nok"
        for byte in head:
            if self.closing.wait(self.every):
                return
            conn.sendall(bytes([byte]))


class Silent(RawServer):
    """Accepts, reads the request, and never answers."""

    def respond(self, conn: socket.socket) -> None:
        self.closing.wait(60)


class Huge(RawServer):
    """Answers `status` with a `size`-byte body streamed as fast as the client reads it."""

    def __init__(self, status: int = 200, size: int = 50 * 1024 * 1024) -> None:
        self.status = status
        self.size = size
        self.sent = 0
        self.finished = threading.Event()
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        try:
            conn.sendall(
                f"HTTP/1.1 {self.status} Whatever\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {self.size}\r\n\r\n".encode()
            )
            chunk = b"x" * 65536
            while self.sent < self.size and not self.closing.is_set():
                part = chunk[: self.size - self.sent]
                conn.sendall(part)
                self.sent += len(part)
        finally:
            self.finished.set()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def elapsed(since: float) -> float:
    return time.monotonic() - since


class Scripted(RawServer):
    """Answers every request with the same raw bytes, then closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(self.answer)


class EndlessInterim(RawServer):
    """Sends `103 Early Hints` answers, one after another, forever (until hung up on)."""

    def respond(self, conn: socket.socket) -> None:
        interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        while not self.closing.is_set():
            conn.sendall(interim)


class CompressedBomb(RawServer):
    """Answers `status` with `Content-Encoding: gzip` and a gzip body that inflates to
    `inflated` bytes of zeros (about a thousandth of that on the wire)."""

    def __init__(self, status: int = 302, inflated: int = 400 * 1024 * 1024) -> None:
        self.status = status
        self.body = _gzip_of_zeros(inflated)
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 {self.status} Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\n"
            f"Content-Encoding: gzip\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n".encode()
            + self.body
        )


def _gzip_of_zeros(size: int) -> bytes:
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    chunk = bytes(1024 * 1024)
    parts = [
        packer.compress(chunk[: min(len(chunk), size - done)])
        for done in range(0, size, len(chunk))
    ]
    parts.append(packer.flush())
    return b"".join(parts)


class ClosesReusedConnections(RawServer):
    """Answers the first request on a connection with 200 and keeps it open; a second
    request on the same connection is read and the connection closed unanswered, as a
    server whose idle timeout fires just as a request arrives."""

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if self._read_request(conn):  # the same connection, reused: read, then hang up
            with self._lock:
                self.requests += 1
