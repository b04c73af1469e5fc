"""Fixtures of the hostile suite: misbehaving receivers, closed after each test, and a
self-signed certificate made once per session."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.hostile.servers import self_signed_certificate
from tests.plugins.rawservers import RawServer

S = TypeVar("S", bound=RawServer)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem) of a self-signed certificate for 127.0.0.1."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def hostile() -> Iterator[Callable[[S], S]]:
    """`hostile(Server(...))` keeps a raw server alive until the test ends."""
    servers: list[RawServer] = []

    def keep(server: S) -> S:
        servers.append(server)
        return server

    yield keep
    for server in servers:
        server.close()
        _wake_accept(server.port)


def _wake_accept(port: int) -> None:
    """Closing a listener does not wake an accept() blocked on it in another thread (on
    Linux); one connection does, and the accept loop then sees it is closing and ends."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        pass


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """`measure(name, value)`: a figure for the report, in the test's user_properties
    (shown by --junitxml with junit_family=xunit1); unlike record_property, no warning
    under the default xunit2."""

    def add(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return add
