"""More misbehaving receivers, on the raw-socket base of tests/plugins/rawservers.py.

Every handler thread here ends soon after the scheduler hangs up (a send fails, or a
read sees the end of the stream), so a test can count the process's threads.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
from pathlib import Path

from tests.plugins.rawservers import RawServer


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1: (cert.pem, key.pem).

    Made with the `cryptography` package when it is installed, else with `openssl req`.
    """
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _with_cryptography(cert, key)
    except ImportError:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return cert, key


def _with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _abort(conn: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class TlsServer(RawServer):
    """HTTPS with a certificate nobody trusts; would answer 200 after a handshake."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.handshakes_failed = 0
        super().__init__()

    def url(self, path: str = "/hook") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            tls = self.context.wrap_socket(conn, server_side=True)
        except OSError:  # the client refused the certificate, as it should
            with self._lock:
                self.handshakes_failed += 1
            conn.close()
            return
        super()._serve(tls)

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class ResetOnAccept(RawServer):
    """Accepts the connection and resets it at once, before reading anything."""

    def __init__(self) -> None:
        self.accepted = 0
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
        _abort(conn)


class ResetAfterRequest(RawServer):
    """Reads the whole request, then resets the connection instead of answering."""

    def respond(self, conn: socket.socket) -> None:
        _abort(conn)


class CloseWithoutAnswer(RawServer):
    """Reads the whole request, then closes cleanly without a byte of answer."""

    def respond(self, conn: socket.socket) -> None:
        return


class HalfStatusLine(RawServer):
    """Sends half a status line, then closes."""

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 20")


class EndlessRedirect(RawServer):
    """Every request is answered 302 to the next path: /hop/1, /hop/2, ..."""

    def respond(self, conn: socket.socket) -> None:
        with self._lock:
            hop = self.requests
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: /hop/{hop}\r\nContent-Length: 0\r\n\r\n".encode()
        )


class HeaderFlood(RawServer):
    """A 200 status line, then header lines as fast as the client reads them, forever."""

    def __init__(self) -> None:
        self.sent = 0
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        number = 0
        while not self.closing.is_set():
            block = b"".join(b"X-Flood-%d: %s\r\n" % (number + i, b"f" * 100) for i in range(200))
            number += 200
            conn.sendall(block)
            self.sent += len(block)


class GiantHeaders(RawServer):
    """A complete 200 whose head is `lines` header lines of `size` bytes each: within
    http.client's own limits (100 lines of 64 KiB), far over any sane header block."""

    def __init__(self, lines: int = 98, size: int = 65000) -> None:
        self.lines = lines
        self.size = size
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
        for number in range(self.lines):
            conn.sendall(b"X-Giant-%d: %s\r\n" % (number, b"g" * self.size))
        conn.sendall(b"\r\nok")


class EndlessHeaderLine(RawServer):
    """A 200 status line, then one header line that never ends."""

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        chunk = b"e" * 65536
        while not self.closing.is_set():
            conn.sendall(chunk)


class SlowEndlessHeaders(RawServer):
    """A 200 status line, then one new header line every `every` seconds, forever."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        number = 0
        while not self.closing.wait(self.every):
            conn.sendall(b"X-Slow-%d: s\r\n" % number)
            number += 1


class EndlessChunked(RawServer):
    """200 with a chunked body that never ends: a chunk every `every` seconds (0: flat out)."""

    def __init__(self, every: float = 0.0, chunk_size: int = 4096) -> None:
        self.every = every
        self.chunk_size = chunk_size
        self.sent = 0
        super().__init__()

    def respond(self, conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (self.chunk_size, b"c" * self.chunk_size)
        while not self.closing.is_set():
            if self.every and self.closing.wait(self.every):
                return
            conn.sendall(chunk)
            self.sent += self.chunk_size


class HangUntilHangup(RawServer):
    """Never answers; its thread ends as soon as the client hangs up.

    Before reading a full request it is also a TLS server that never answers a
    ClientHello: an https:// URL to it hangs in the handshake.
    """

    def respond(self, conn: socket.socket) -> None:
        while not self.closing.is_set() and conn.recv(65536):
            pass


class TlsHandshakeTrickler(RawServer):
    """Reads the ClientHello, then answers with the start of a large TLS handshake record,
    one byte every `every` seconds: every read gets a byte, so no per-read timeout fires.
    """

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        super().__init__()

    def url(self, path: str = "/hook") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            if not conn.recv(65536):  # the ClientHello
                return
            with self._lock:
                self.requests += 1
            # A handshake record (0x16), TLS 1.2 framing, 16384 bytes long: never completed.
            for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 16384:
                if self.closing.wait(self.every):
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            pass  # the client hung up, as it should
        finally:
            conn.close()
