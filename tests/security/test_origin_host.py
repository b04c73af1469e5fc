"""An open API answers only its own Host names and browser origins: a cross-site page
(`text/plain` POSTs included) and a DNS-rebinding page get 403; a listed origin gets CORS.
Real `scheduler serve` processes, requests over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from scheduler_core.http_guard import HostPolicy, parse_allowed_hosts, parse_cors_origins
from tests.security.served import served
from tests.support.processes import SchedulerProcess, run_cli

APP = "https://app.example.com"
EVIL = "https://evil.example"
KEY = "k1-origin-test-key"
TASK = {"webhookUrl": "http://127.0.0.1:9/hook", "executeAt": "2099-01-01T00:00:00Z"}
ENV = {
    "SCHEDULER_CORS_ORIGINS": f"{APP}, http://localhost:3000",
    "SCHEDULER_ALLOWED_HOSTS": ("scheduler.internal *.svc.example"),
}


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with served(tmp_path_factory.mktemp("open"), env=ENV) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with served(tmp_path_factory.mktemp("keyed"), env={**ENV, "SCHEDULER_API_KEYS": KEY}) as s:
        yield s


def call(server: SchedulerProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    assert server.base_url is not None
    return requests.request(method, server.base_url + path, timeout=10, **kwargs)


def port(server: SchedulerProcess) -> int:
    assert server.base_url is not None
    return int(server.base_url.rsplit(":", 1)[1])


def task_count(server: SchedulerProcess, **headers: str) -> int:
    response = call(server, "GET", "/api/v1/tasks?limit=1000", headers=headers)
    assert response.status_code == 200, response.text
    return len(response.json()["tasks"])


def assert_refused(response: requests.Response, reason: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden"  # SPEC.md's code for a 403
    assert error["details"] == {"reason": [reason]}
    assert "access-control-allow-origin" not in {name.lower() for name in response.headers}


# -- an open API ------------------------------------------------------------------------


def test_a_cross_site_text_plain_post_is_refused_and_stores_nothing(
    open_server: SchedulerProcess,
) -> None:
    before = task_count(open_server)
    # What a page on another site can send without a preflight: a "simple" request.
    response = call(
        open_server,
        "POST",
        "/api/v1/tasks",
        data=b'{"webhookUrl": "http://127.0.0.1:9/hook"}',
        headers={"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"},
    )
    assert_refused(response, "origin_not_allowed")
    for method, path in [("GET", "/api/v1/tasks"), ("PATCH", "/api/v1/config")]:
        assert_refused(
            call(open_server, method, path, json={}, headers={"Origin": EVIL}),
            "origin_not_allowed",
        )
    assert task_count(open_server) == before


def test_a_dns_rebinding_page_is_refused(open_server: SchedulerProcess) -> None:
    rebound = f"rebind.evil.example:{port(open_server)}"  # the attacker's name, our address
    before = task_count(open_server)
    for headers in [
        {"Host": rebound},
        {"Host": rebound, "Origin": f"http://{rebound}"},  # the page's own origin
        {"Host": "scheduler.internal.evil.example"},
        {"Host": "localhost.evil.example"},
        {"Host": "127.0.0.1.nip.io"},
        {"Host": "bad host"},
    ]:
        assert_refused(
            call(open_server, "POST", "/api/v1/tasks", json=TASK, headers=headers),
            "host_not_allowed",
        )
    assert task_count(open_server) == before


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST.:{port}",
        "[::1]:{port}",
        "127.0.0.1",
        "localhost:18080",  # a port mapping in front
        "scheduler.internal",
        "scheduler.internal:443",
        "api.svc.example:{port}",
    ],
)
def test_the_listening_address_and_allowed_names_are_served(
    open_server: SchedulerProcess, host: str
) -> None:
    headers = {"Host": host.format(port=port(open_server))}
    response = call(open_server, "POST", "/api/v1/tasks", json=TASK, headers=headers)
    assert response.status_code == 201, response.text


def test_a_request_without_origin_works_as_before(open_server: SchedulerProcess) -> None:
    # curl, a server-side fetch: no Origin header.
    assert call(open_server, "POST", "/api/v1/tasks", json=TASK).status_code == 201
    assert call(open_server, "GET", "/api/v1/tasks").status_code == 200


def test_a_page_served_by_the_server_itself_is_not_cross_origin(
    open_server: SchedulerProcess,
) -> None:
    own = f"http://127.0.0.1:{port(open_server)}"
    response = call(open_server, "POST", "/api/v1/tasks", json=TASK, headers={"Origin": own})
    assert response.status_code == 201, response.text


def test_a_listed_origin_gets_cors_headers(open_server: SchedulerProcess) -> None:
    response = call(open_server, "POST", "/api/v1/tasks", json=TASK, headers={"Origin": APP})
    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in response.headers["Vary"]
    assert "Location" in response.headers["Access-Control-Expose-Headers"]
    # Errors too, so that the page can read them.
    missing = call(open_server, "GET", "/api/v1/tasks/nope", headers={"Origin": APP})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == APP


def test_a_listed_origin_gets_its_preflight_answered(open_server: SchedulerProcess) -> None:
    response = call(
        open_server,
        "OPTIONS",
        "/api/v1/tasks",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert "Origin" in response.headers["Vary"]


def test_a_preflight_from_another_origin_is_refused(open_server: SchedulerProcess) -> None:
    response = call(
        open_server,
        "OPTIONS",
        "/api/v1/tasks",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "DELETE"},
    )
    assert_refused(response, "origin_not_allowed")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_answer_whatever_the_host_and_origin(
    open_server: SchedulerProcess, path: str
) -> None:
    # An orchestrator probes by pod IP or service name, which the server cannot know.
    for headers in [{"Host": "10.1.2.3:8080"}, {"Host": "scheduler.default.svc"}, {"Origin": EVIL}]:
        assert call(open_server, "GET", path, headers=headers).status_code == 200


# -- with API keys ----------------------------------------------------------------------


def test_with_keys_any_host_and_origin_may_call_with_a_key(keyed_server: SchedulerProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for headers in [{"Host": "scheduler.behind.a.proxy"}, {"Origin": EVIL}]:
        response = call(
            keyed_server, "POST", "/api/v1/tasks", json=TASK, headers={**auth, **headers}
        )
        assert response.status_code == 201, response.text
        # No CORS headers for an unlisted origin: a browser keeps the answer from the page.
        assert "Access-Control-Allow-Origin" not in response.headers
    without_key = call(keyed_server, "POST", "/api/v1/tasks", json=TASK, headers={"Origin": EVIL})
    assert without_key.status_code == 401


def test_with_keys_a_listed_origin_gets_cors_and_its_preflight_needs_no_key(
    keyed_server: SchedulerProcess,
) -> None:
    preflight = call(
        keyed_server,
        "OPTIONS",
        "/api/v1/tasks",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    unauthorized = call(keyed_server, "GET", "/api/v1/tasks", headers={"Origin": APP})
    assert unauthorized.status_code == 401  # readable by the page: it can tell the user
    assert unauthorized.headers["Access-Control-Allow-Origin"] == APP
    response = call(
        keyed_server,
        "GET",
        "/api/v1/tasks",
        headers={"Origin": APP, "Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP


# -- a wildcard listener, and the settings ----------------------------------------------


def test_a_wildcard_listener_serves_any_ip_address_but_not_other_names(tmp_path: Path) -> None:
    with served(tmp_path, "--host", "0.0.0.0") as server:
        served_port = port(server)
        for host in ["192.0.2.10:8080", f"127.0.0.1:{served_port}", "[2001:db8::1]", "localhost"]:
            response = call(server, "GET", "/api/v1/tasks", headers={"Host": host})
            assert response.status_code == 200, (host, response.text)
        assert_refused(
            call(server, "GET", "/api/v1/tasks", headers={"Host": "evil.example"}),
            "host_not_allowed",
        )


def test_a_specific_address_listener_serves_that_address_only() -> None:
    policy = HostPolicy.for_listener("192.0.2.7")
    assert policy.allows_host("192.0.2.7:8080")
    assert policy.allows_host("[::ffff:192.0.2.7]")
    assert not policy.allows_host("192.0.2.8")
    assert not policy.allows_host("localhost")
    loopback = HostPolicy.for_listener("127.0.0.1")
    assert loopback.allows_host("127.0.0.2") and loopback.allows_host("[::1]:1")
    assert not loopback.allows_host("10.0.0.1")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCHEDULER_CORS_ORIGINS", "*"),
        ("SCHEDULER_CORS_ORIGINS", "null"),
        ("SCHEDULER_CORS_ORIGINS", "app.example.com"),
        ("SCHEDULER_CORS_ORIGINS", "https://app.example.com/path"),
        ("SCHEDULER_ALLOWED_HOSTS", "*"),
        ("SCHEDULER_ALLOWED_HOSTS", "https://api.example.com"),
        ("SCHEDULER_ALLOWED_HOSTS", "api.example.com:8443"),
    ],
)
def test_a_bad_list_refuses_to_start_with_a_one_line_error(
    tmp_path: Path, name: str, value: str
) -> None:
    result = run_cli(
        f"sqlite:///{tmp_path / 'db.sqlite'}", "serve", "--port", "0", env={name: value}
    )
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {name}")


def test_the_lists_are_read_as_browsers_send_origins_and_hosts() -> None:
    assert parse_cors_origins(
        "https://App.Example.com/, http://localhost:3000 https://x.io:443"
    ) == (
        "https://app.example.com",
        "http://localhost:3000",
        "https://x.io",
    )
    assert parse_allowed_hosts("API.example.com. *.svc.example,[::1]") == (
        "api.example.com",
        "*.svc.example",
        "::1",
    )
    policy = HostPolicy.for_listener("127.0.0.1", parse_allowed_hosts("*.svc.example"))
    assert policy.allows_host("a.b.svc.example:80")
    assert not policy.allows_host("svc.example")
    assert not policy.allows_host("evilsvc.example")
