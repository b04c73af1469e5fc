"""Fixtures: the core's real API and dispatcher on a SQLite file, the AMQP plugin, a real
RabbitMQ (SCHEDULER_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/), and TCP
stand-ins this suite owns (a proxy it can stop and restart, a listener that never speaks,
a TLS front) so the shared broker itself is never stopped.

When RabbitMQ cannot be reached the tests that need it are skipped, except under CI=true,
where that fails the run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pytest
from flask.testing import FlaskClient
from scheduler_core import targets
from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store, open_store

import scheduler_core_amqp
from scheduler_core_amqp.delivery import pool

AMQP_URL = os.environ.get("SCHEDULER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
_BROKER = urlsplit(AMQP_URL)
BROKER_HOST = _BROKER.hostname or "127.0.0.1"
BROKER_PORT = _BROKER.port or 5672
BROKER_USER = _BROKER.username or "guest"
BROKER_PASSWORD = _BROKER.password or "guest"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _broker_problem() -> str | None:
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


# -- the broker, as the tests see it (a plain BlockingConnection of their own) -------------


class Broker:
    """Declares uniquely named queues and exchanges, reads what arrived, and deletes
    everything it declared at the end."""

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(
            pika.ConnectionParameters(
                BROKER_HOST,
                BROKER_PORT,
                credentials=pika.PlainCredentials(BROKER_USER, BROKER_PASSWORD),
            )
        )
        self.channel = self.connection.channel()
        self._queues: list[str] = []
        self._exchanges: list[str] = []

    def url(self, host: str = BROKER_HOST, port: int = BROKER_PORT, scheme: str = "amqp") -> str:
        user, password = quote(BROKER_USER, safe=""), quote(BROKER_PASSWORD, safe="")
        return f"{scheme}://{user}:{password}@{host}:{port}/"

    def queue(self, prefix: str = "sc-amqp-test", **arguments: Any) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.channel.queue_declare(name, durable=True, arguments=arguments or None)
        self._queues.append(name)
        return name

    def exchange(self, kind: str = "direct") -> str:
        name = f"sc-amqp-test-x-{uuid.uuid4().hex[:10]}"
        self.channel.exchange_declare(name, exchange_type=kind, durable=False, auto_delete=False)
        self._exchanges.append(name)
        return name

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self.channel.queue_bind(queue, exchange, routing_key=routing_key)

    def get(self, queue: str) -> tuple[Any, bytes] | None:
        """The next message of `queue` (properties, body), or None."""
        method, properties, body = self.channel.basic_get(queue, auto_ack=True)
        if method is None:
            return None
        return properties, body

    def all(self, queue: str) -> list[tuple[Any, bytes]]:
        messages = []
        while (message := self.get(queue)) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        try:
            for name in self._queues:
                self.channel.queue_delete(name)
            for name in self._exchanges:
                self.channel.exchange_delete(name)
        finally:
            self.connection.close()


@pytest.fixture
def broker() -> Iterator[Broker]:
    problem = _broker_problem()
    if problem:
        message = f"RabbitMQ is not reachable at {BROKER_HOST}:{BROKER_PORT}: {problem}"
        if _in_ci():
            pytest.fail(f"{message} (CI=true: the AMQP tests must run)", pytrace=False)
        pytest.skip(message)
    broker = Broker()
    yield broker
    broker.close()


# -- the core, with this plugin ------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """No test leaves a target policy or kept broker connections to the next."""
    yield
    targets.set_policy(targets.TargetPolicy())
    pool.close_all()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'scheduler.db'}", load_entry_points=False)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.database_url, pool_size=4)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def plugins(settings: Settings) -> PluginManager:
    return PluginManager(settings, extra_plugins=(scheduler_core_amqp,))


@pytest.fixture
def client(settings: Settings, store: Store, plugins: PluginManager) -> FlaskClient:
    app = create_app(settings, store=store, plugins=plugins, test_config={"TESTING": True})
    return app.test_client()


@pytest.fixture
def dispatcher(store: Store, plugins: PluginManager) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(store, plugins)
    yield dispatcher
    dispatcher.stop(wait=True)


@dataclass
class Api:
    """The public API, as a client uses it, and the dispatcher's tick."""

    client: FlaskClient
    dispatcher: Dispatcher
    store: Store

    def enqueue(self, url: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/tasks", json={"webhookUrl": url, **fields})
        assert response.status_code == 201, response.json
        created: dict[str, Any] = _json(response)
        return created

    def enqueue_many(self, urls: list[str]) -> list[dict[str, Any]]:
        response = self.client.post("/api/v1/tasks", json=[{"webhookUrl": u} for u in urls])
        assert response.status_code == 201, response.json
        created: list[dict[str, Any]] = _json(response)["tasks"]
        return created

    def refused(self, url: str) -> dict[str, Any]:
        response = self.client.post("/api/v1/tasks", json={"webhookUrl": url})
        assert response.status_code == 400, response.json
        body: dict[str, Any] = _json(response)
        return body

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.json
        body: dict[str, Any] = _json(response)
        return body

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/api/v1/tasks/{task_id}/attempts")
        assert response.status_code == 200, response.json
        rows: list[dict[str, Any]] = _json(response)["attempts"]
        return rows

    def tick(self) -> float:
        """One dispatcher round; its wall time in seconds."""
        started = time.monotonic()
        self.dispatcher.tick()
        return time.monotonic() - started

    def config(self, **columns: int) -> None:
        self.store.update_config(columns)


def _json(response: Any) -> Any:
    body = response.get_json()
    assert body is not None
    return body


@pytest.fixture
def api(client: FlaskClient, dispatcher: Dispatcher, store: Store) -> Api:
    return Api(client, dispatcher, store)


# -- TCP stand-ins this suite owns ---------------------------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1 to the broker that the test can stop (every connection
    through it is cut, new ones refused: the broker went away) and start again on the same
    port (it came back), freeze (bytes from the broker are held back: it went silent), or
    cut a connection as the client next sends on it (it died under a publish)."""

    def __init__(self, target: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls = tls
        self.port = 0
        self.accepted = 0
        self.frozen = threading.Event()
        self.cut_on_next_send = threading.Event()  # the next bytes from the client: cut it
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            try:
                if self.tls is not None:
                    downstream.settimeout(5)
                    downstream = self.tls.wrap_socket(downstream, server_side=True)
                    downstream.settimeout(None)
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _shut(downstream)
                continue
            with self._lock:
                self.accepted += 1
                self._sockets += [downstream, upstream]
            threading.Thread(
                target=self._pump, args=(downstream, upstream, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, downstream, True), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_broker: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not from_broker and self.cut_on_next_send.is_set():
                    self.cut_on_next_send.clear()
                    break  # the connection dies as the client sends: nothing gets through
                while from_broker and self.frozen.is_set():
                    time.sleep(0.01)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(source)
            _shut(sink)


class SilentListener:
    """Accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(sock)

    def close(self) -> None:
        _shut(self._listener)
        for sock in self._held:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy() -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(tls: ssl.SSLContext | None = None) -> Proxy:
        made.append(Proxy((BROKER_HOST, BROKER_PORT), tls=tls))
        return made[-1]

    yield make
    for each in made:
        each.stop()


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


# -- TLS: a throwaway CA and a server certificate for a name ------------------------------


@dataclass
class Certificates:
    ca_file: Path
    server: Callable[[str], ssl.SSLContext]  # a server context whose certificate names it


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scheduler-core-amqp test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def server(name: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        stem = tmp_path / f"server-{uuid.uuid4().hex[:6]}"
        cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context

    return Certificates(ca_file=ca_file, server=server)
