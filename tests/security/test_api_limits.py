"""The API holds up under abuse, over real sockets against a real `scheduler serve`:
idle and slow (slowloris) connections cannot lock a new client out, they are closed after
their timeouts, and an oversized body is refused before it is read."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.security.served import address, read_response, served, wait_closed
from tests.support.processes import SchedulerProcess
from tests.support.waiting import wait_until

KEY = "k1-limits-test-key"
TASK = {"webhookUrl": "http://127.0.0.1:9/hook", "executeAt": "2099-01-01T00:00:00Z"}
SERVED_WITHIN_S = 1.0


class Slowloris:
    """A client that sends one more header line every `interval` seconds, never ending
    the request head, until stopped or until the server closes the connection."""

    def __init__(self, host: str, port: int, interval: float = 1.0):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self.lines_sent = 0
        self.cut_off = threading.Event()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sock.sendall(b"X-Slow-%d: x\r\n" % self.lines_sent)
            except OSError:
                self.cut_off.set()
                return
            self.lines_sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@contextlib.contextmanager
def idle_connections(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection((host, port), timeout=5))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def served_within(server: SchedulerProcess, seconds: float) -> None:
    """A new client gets GET /healthz and an authenticated enqueue answered, each within
    `seconds`."""
    assert server.base_url is not None
    with requests.Session() as session:
        started = time.monotonic()
        health = session.get(server.base_url + "/healthz", timeout=seconds)
        health_s = time.monotonic() - started
        started = time.monotonic()
        created = session.post(
            server.base_url + "/api/v1/tasks",
            json=TASK,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=seconds,
        )
        enqueue_s = time.monotonic() - started
    assert health.status_code == 200
    assert created.status_code == 201, created.text
    assert health_s < seconds and enqueue_s < seconds, (health_s, enqueue_s)


def assert_lockout_does_not_hold(server: SchedulerProcess, rounds: int) -> None:
    host, port = address(server)
    with idle_connections(host, port, 200):
        slowloris = Slowloris(host, port)
        try:
            for round_number in range(1, rounds + 1):
                # The attack goes on: the slow client has sent one more line a second.
                wait_until(
                    lambda n=round_number: slowloris.lines_sent > n or slowloris.cut_off.is_set(),
                    timeout=10,
                    message="for the slowloris client to send a header line",
                )
                served_within(server, SERVED_WITHIN_S)
        finally:
            slowloris.close()


def test_200_idle_connections_and_a_slowloris_client_do_not_lock_a_new_client_out(
    tmp_path: Path,
) -> None:
    # A limit well below the attack: the longest-waiting connections make room.
    with served(tmp_path, "--connection-limit", "50", env={"SCHEDULER_API_KEYS": KEY}) as server:
        assert_lockout_does_not_hold(server, rounds=1)
        assert "the connection limit" in server.output  # the operator is told


@pytest.mark.slow
def test_with_default_settings_a_new_client_stays_served_through_an_attack(
    tmp_path: Path,
) -> None:
    with served(tmp_path, env={"SCHEDULER_API_KEYS": KEY}) as server:
        assert_lockout_does_not_hold(server, rounds=5)


def test_connections_over_the_limit_are_closed_longest_idle_first(tmp_path: Path) -> None:
    with served(tmp_path, "--connection-limit", "10", env={"SCHEDULER_API_KEYS": KEY}) as server:
        host, port = address(server)
        with idle_connections(host, port, 10) as oldest, idle_connections(host, port, 5):
            # Five newcomers took the places of the five connections idle the longest.
            for sock in oldest[:5]:
                assert wait_closed(sock, 5), "an old idle connection was left open"
            served_within(server, SERVED_WITHIN_S)


def test_a_slowloris_client_gets_408_and_is_closed_after_the_read_timeout(
    tmp_path: Path,
) -> None:
    with served(tmp_path, "--read-timeout", "2", "--idle-timeout", "30") as server:
        host, port = address(server)
        slowloris = Slowloris(host, port, interval=0.3)
        try:
            started = time.monotonic()
            response = read_response(slowloris.sock, timeout=5)
            elapsed = time.monotonic() - started
        finally:
            slowloris.close()
    assert response.status == 408
    assert json.loads(response.body)["error"]["code"] == "request_timeout"
    assert response.closed
    assert slowloris.lines_sent >= 4  # it kept sending: trickling bytes did not help
    assert 1.5 <= elapsed < 4.0, elapsed


def test_a_request_sent_in_pieces_within_the_read_timeout_is_served(tmp_path: Path) -> None:
    with served(tmp_path, "--read-timeout", "3") as server:
        host, port = address(server)
        body = json.dumps(TASK).encode()
        pieces = [
            b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            b"Content-Type: application/json\r\n",
            b"Content-Length: %d\r\n\r\n" % len(body),
            body[:10],
            body[10:],
        ]
        with socket.create_connection((host, port), timeout=5) as sock:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.3)  # a slow client, well within the read timeout
            response = read_response(sock, timeout=5)
    assert response.status == 201, response.body


def test_an_idle_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with served(tmp_path, "--idle-timeout", "1") as server:
        host, port = address(server)
        with socket.create_connection((host, port), timeout=5) as silent:
            started = time.monotonic()
            assert wait_closed(silent, 4), "a connection that sent nothing was kept open"
            assert time.monotonic() - started >= 0.5
        # A keep-alive connection after its answer, too.
        with socket.create_connection((host, port), timeout=5) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(kept, timeout=5).status == 200
            assert wait_closed(kept, 4), "an idle keep-alive connection was kept open"


# -- the body limit, on the wire ----------------------------------------------------------


def _huge_head(extra: bytes = b"") -> bytes:
    return (
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 209715200\r\n" + extra + b"\r\n"
    )


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    env = {"SCHEDULER_API_KEYS": KEY, "SCHEDULER_MAX_BODY_BYTES": "1000"}
    with served(tmp_path_factory.mktemp("limits"), env=env) as server:
        yield server


def test_a_huge_content_length_without_a_key_is_413_at_once_without_the_body(
    keyed_server: SchedulerProcess,
) -> None:
    with socket.create_connection(address(keyed_server), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(_huge_head() + b'{"web')  # 200 MiB announced, 5 bytes sent
        response = read_response(sock, timeout=2)
        elapsed = time.monotonic() - started
    assert response.status == 413
    assert json.loads(response.body)["error"]["code"] == "payload_too_large"
    assert response.closed
    assert elapsed < 1.0


def test_a_huge_body_announced_with_expect_100_continue_is_refused_without_continue(
    keyed_server: SchedulerProcess,
) -> None:
    with socket.create_connection(address(keyed_server), timeout=5) as sock:
        sock.sendall(_huge_head(b"Expect: 100-continue\r\n"))
        response = read_response(sock, timeout=2)
    assert response.status == 413  # not "100 Continue": the client never sends the body


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    keyed_server: SchedulerProcess,
) -> None:
    with socket.create_connection(address(keyed_server), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(11):  # 1100 bytes, and the body never ends
            sock.sendall(b"64\r\n" + b" " * 100 + b"\r\n")
        response = read_response(sock, timeout=2)
    assert response.status == 413
    assert json.loads(response.body)["error"]["code"] == "payload_too_large"


def test_a_body_of_exactly_the_limit_passes_the_wire_check(
    keyed_server: SchedulerProcess,
) -> None:
    assert keyed_server.base_url is not None
    url = keyed_server.base_url + "/api/v1/tasks"
    auth = {"Authorization": f"Bearer {KEY}"}
    head = json.dumps({**TASK, "payload": ""})[:-2]
    at_limit = (head + "a" * (1000 - len(head) - 2) + '"}').encode()
    assert len(at_limit) == 1000
    assert requests.post(url, data=at_limit, headers=auth, timeout=10).status_code == 201
    over = requests.post(url, data=at_limit + b" ", headers=auth, timeout=10)
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "payload_too_large"
    # Without a key, a body within the limit reaches authentication: 401.
    assert requests.post(url, data=at_limit, timeout=10).status_code == 401


def test_an_oversized_head_is_refused_in_the_api_error_shape(
    keyed_server: SchedulerProcess,
) -> None:
    with socket.create_connection(address(keyed_server), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000)
        response = read_response(sock, timeout=5)
    assert response.status == 431
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body)["error"]["code"] == "headers_too_large"


def test_a_malformed_request_is_400_in_the_api_error_shape(
    keyed_server: SchedulerProcess,
) -> None:
    with socket.create_connection(address(keyed_server), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon here\r\n\r\n")
        response = read_response(sock, timeout=5)
    assert response.status == 400
    error = json.loads(response.body)["error"]
    assert error["code"] == "bad_request"
    assert "header" in error["message"].lower()
