"""rediss://: TLS to a Redis server of the test's own, with a CA made here. The connection
goes to the address that was resolved and checked, and the certificate is still verified
against the URL's host name."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from scheduler_core.models import Callback

from scheduler_core_redis import deliver
from scheduler_core_redis.delivery import CA_CERTS_ENV

from conftest import enqueue, get_task


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem; server.pem/server.key for the name `localhost` only (no IP address)."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("scheduler-core-redis test CA"))
        .issuer_name(_name("scheduler-core-redis test CA"))
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
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "server.key", key)
    return folder


@pytest.fixture
def tls_server(redis_server, pki: Path):
    return redis_server(
        "--tls-cert-file",
        str(pki / "server.pem"),
        "--tls-key-file",
        str(pki / "server.key"),
        "--tls-ca-cert-file",
        str(pki / "ca.pem"),
        "--tls-auth-clients",
        "no",
        tls=True,
    )


def _tls_client(server, pki: Path) -> redis.Redis:
    return redis.Redis(
        host="localhost",
        port=server.port,
        ssl=True,
        ssl_ca_certs=str(pki / "ca.pem"),
        socket_timeout=5,
    )


def test_rediss_delivers_to_a_server_whose_certificate_names_the_host(
    client, dispatcher, tls_server, pki, monkeypatch
):
    monkeypatch.setenv(CA_CERTS_ENV, str(pki / "ca.pem"))
    created = enqueue(client, f"rediss://localhost:{tls_server.port}/0?stream=s", payload="tls")
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["status"] == "resolved", task["lastError"]
    reader = _tls_client(tls_server, pki)
    entries: Any = reader.xrange("s")
    reader.close()
    [entry] = entries
    assert b'"payload": "tls"' in entry[1][b"body"]


def test_the_certificate_is_verified_against_the_urls_host_not_the_address(
    client, dispatcher, tls_server, pki, monkeypatch
):
    # The same server and address; but the certificate names localhost, not 127.0.0.1.
    monkeypatch.setenv(CA_CERTS_ENV, str(pki / "ca.pem"))
    created = enqueue(client, f"rediss://127.0.0.1:{tls_server.port}/0?stream=s", payload=1)
    dispatcher.tick()
    error = get_task(client, created["id"])["lastError"]
    assert error.startswith("tls error: certificate verify failed: "), error
    assert "127.0.0.1" in error  # Hostname mismatch, certificate is not valid for '127.0.0.1'


def test_a_certificate_from_an_unknown_authority_is_refused(client, dispatcher, tls_server):
    created = enqueue(client, f"rediss://localhost:{tls_server.port}/0?stream=s", payload=1)
    dispatcher.tick()
    error = get_task(client, created["id"])["lastError"]
    assert error.startswith("tls error: certificate verify failed"), error


def test_plain_redis_to_a_tls_port_fails_the_attempt(client, dispatcher, tls_server):
    created = enqueue(client, f"redis://127.0.0.1:{tls_server.port}/0?stream=s", payload=1)
    dispatcher.tick()
    task = get_task(client, created["id"])
    assert task["status"] == "pending"
    assert task["lastError"].startswith("connection error: "), task["lastError"]


def test_attempts_one_after_another_share_one_tls_connection(
    client, dispatcher, tls_server, pki, monkeypatch
):
    monkeypatch.setenv(CA_CERTS_ENV, str(pki / "ca.pem"))
    reader = _tls_client(tls_server, pki)
    before = int(reader.info("stats")["total_connections_received"])
    for i in range(5):
        created = enqueue(client, f"rediss://localhost:{tls_server.port}/0?stream=s", payload=i)
        dispatcher.tick()
        assert get_task(client, created["id"])["status"] == "resolved"
    assert int(reader.info("stats")["total_connections_received"]) == before + 1
    assert reader.xlen("s") == 5
    reader.close()


def test_a_server_that_never_starts_tls_times_out_in_the_handshake(fake_redis, pki, monkeypatch):
    monkeypatch.setenv(CA_CERTS_ENV, str(pki / "ca.pem"))
    silent = fake_redis("silent")
    deadline = time.monotonic() + 0.3
    callback = Callback(
        url=f"rediss://localhost:{silent.port}/0?stream=s",
        headers=MappingProxyType({}),
        body=b"{}",
    )
    report = deliver(callback, deadline)
    assert time.monotonic() - deadline < 0.15
    assert report.timed_out and report.error == "the TLS handshake did not finish"
    assert report.sent_at is None
