"""The error shape for every failure, body limits, and bodies that are not JSON."""

import io
import json
import logging

import pytest

from scheduler_core.api import create_app
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from tests.api.helpers import FUTURE, NOWHERE, assert_error, enqueue, task_count

MIB = 1024 * 1024


def body_of_size(size, url=NOWHERE):
    """A valid single-task body of exactly `size` bytes."""
    head = json.dumps({"webhookUrl": url, "payload": ""})[:-2]  # ends at `"payload": "`
    filler = size - len(head) - 2
    body = f'{head}{"a" * filler}"}}'.encode()
    assert len(body) == size
    return body


def app_with(store, clean_database, **settings_fields):
    settings = Settings(database_url=clean_database, load_entry_points=False, **settings_fields)
    return create_app(
        settings, store=store, plugins=PluginManager(settings), test_config={"TESTING": True}
    )


# -- routing errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/api/v1", "/api/v1/nothing", "/api/v2/tasks", "/api/v1/tasks/a/b/c"]
)
def test_unknown_route_is_404_json(client, path):
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/tasks"),
        ("DELETE", "/api/v1/tasks"),
        ("PATCH", "/api/v1/tasks"),
        ("PUT", "/api/v1/tasks/some-id"),
        ("POST", "/api/v1/tasks/some-id"),
        ("GET", "/api/v1/tasks:retry"),
        ("DELETE", "/api/v1/tasks:cancel"),
        ("GET", "/api/v1/tasks/some-id/retry"),
        ("POST", "/api/v1/tasks/some-id/attempts"),
        ("POST", "/api/v1/config"),
        ("PUT", "/api/v1/config"),
        ("DELETE", "/api/v1/config"),
        ("POST", "/healthz"),
    ],
)
def test_wrong_method_is_405_json(client, store, method, path):
    response = client.open(path, method=method, json={"webhookUrl": NOWHERE})
    assert_error(response, 405, "method_not_allowed")
    assert response.headers.get("Allow")
    assert task_count(store) == 0


# -- body size -----------------------------------------------------------------------------


def test_a_body_over_one_mib_is_413_and_stores_nothing(client, store):
    response = client.post(
        "/api/v1/tasks", data=body_of_size(MIB + 1), content_type="application/json"
    )
    assert_error(response, 413, "payload_too_large")
    assert task_count(store) == 0


def test_a_body_of_exactly_one_mib_is_accepted(client, store):
    response = client.post("/api/v1/tasks", data=body_of_size(MIB), content_type="text/plain")
    assert response.status_code == 201
    assert len(response.get_json()["payload"]) > MIB - 100
    assert task_count(store) == 1


def test_an_oversized_array_is_413_and_stores_nothing(client, store):
    body = json.dumps([{"webhookUrl": NOWHERE, "payload": "x" * 2000}] * 600).encode()
    assert len(body) > MIB
    response = client.post("/api/v1/tasks", data=body, content_type="application/json")
    assert_error(response, 413, "payload_too_large")
    assert task_count(store) == 0


def post_chunked(client, body, path="/api/v1/tasks"):
    """A body without Content-Length, as a chunked request reaches the app under waitress."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize(
    "body",
    [
        body_of_size(MIB + 1),
        # Valid JSON up to the limit, then padding: must not be cut short and accepted.
        json.dumps({"webhookUrl": NOWHERE}).encode() + b" " * MIB,
    ],
)
def test_a_chunked_body_over_the_limit_is_413(client, store, body):
    assert_error(post_chunked(client, body), 413, "payload_too_large")
    assert task_count(store) == 0


def test_a_chunked_body_within_the_limit_is_accepted(client, store):
    assert post_chunked(client, json.dumps({"webhookUrl": NOWHERE}).encode()).status_code == 201
    assert post_chunked(client, body_of_size(MIB)).status_code == 201
    assert task_count(store) == 2


def test_the_body_limit_is_a_setting(store, clean_database):
    client = app_with(store, clean_database, max_body_bytes=1000).test_client()
    assert client.post("/api/v1/tasks", data=body_of_size(1000)).status_code == 201
    response = client.post("/api/v1/tasks", data=body_of_size(1001))
    assert_error(response, 413, "payload_too_large")
    response = client.patch("/api/v1/config", data=b'{"selectSize": 5}' + b" " * 1000)
    assert_error(response, 413, "payload_too_large")
    assert store.get_config().select_size == 100
    assert task_count(store) == 1


# -- bodies that are not JSON, or not a task ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n\t ",
        b"{",
        b'{"webhookUrl": "http://example.com/"',
        b"{'webhookUrl': 'http://example.com/'}",
        b'{"webhookUrl": "http://example.com/",}',
        b'{"webhookUrl": "http://example.com/"} trailing',
        b'{"webhookUrl": "http://example.com/"}{"webhookUrl": "http://example.com/"}',
        b"webhookUrl=http%3A%2F%2Fexample.com%2F",
        b"\xff\xfe{\x00}\x00",
        b'{"webhookUrl": "http://example.com/", "payload": "\xe9t\xe9"}',  # latin-1, not UTF-8
        b'{"webhookUrl": "http://example.com/", "payload": "\xed\xa0\x80"}',  # encoded surrogate
        b"undefined",
        b'{"webhookUrl": "http://example.com/", "payload": NaN}',
        b'{"webhookUrl": "http://example.com/", "payload": 1e999}',
        b'{"webhookUrl": "http://example.com/", "payload": "\\ud83d"}',
        b'{"webhookUrl": "http://example.com/", "payload": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
    ],
)
def test_a_body_that_is_not_json_is_invalid_json(client, store, body):
    for content_type in ("application/json", "text/plain"):
        response = client.post("/api/v1/tasks", data=body, content_type=content_type)
        assert_error(response, 400, "invalid_json")
    assert task_count(store) == 0


@pytest.mark.parametrize("body", ['"http://example.com/"', "42", "-1.5", "true", "false", "null"])
def test_a_json_body_that_is_not_an_object_is_a_validation_error(client, store, body):
    response = client.post("/api/v1/tasks", data=body, content_type="application/json")
    assert_error(response, 400, "validation_error")
    assert task_count(store) == 0


def test_validation_errors_name_every_bad_field(client, store):
    response = client.post(
        "/api/v1/tasks",
        json={
            "webhookUrl": "ftp://x/",
            "executeAt": "soon",
            "maxRetries": -1,
            "typo": 1,
        },
    )
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"webhookUrl", "executeAt", "maxRetries", "typo"}
    for messages in error["details"].values():
        assert isinstance(messages, list) and all(isinstance(m, str) and m for m in messages)
    assert task_count(store) == 0


def test_a_refused_request_changes_nothing_already_stored(client, store):
    task = enqueue(client, executeAt=FUTURE, idempotencyKey="k")
    bad = [
        client.post("/api/v1/tasks", json=[{"webhookUrl": NOWHERE}, {"webhookUrl": "nope"}]),
        client.post("/api/v1/tasks", data=b"{"),
        client.post(
            "/api/v1/tasks", json={"webhookUrl": NOWHERE, "idempotencyKey": "k", "maxRetries": True}
        ),
        client.patch("/api/v1/config", json={"selectSize": 0}),
        client.get("/api/v1/tasks?limit=0"),
    ]
    assert [r.status_code for r in bad] == [400] * 5
    assert client.get(f"/api/v1/tasks/{task['id']}").get_json() == task
    assert task_count(store) == 1


# -- 500 and 503 -----------------------------------------------------------------------------


class ExplodingStore:
    """A store whose every read fails with an internal error mentioning a secret."""

    dialect = "postgresql"

    def __getattr__(self, name):
        def explode(*args, **kwargs):
            raise RuntimeError("password=db-internal-secret at /srv/secret/path.py line 3")

        return explode


def test_an_unexpected_error_is_500_without_internals(clean_database, caplog):
    settings = Settings(database_url=clean_database, load_entry_points=False)
    app = create_app(
        settings,
        store=ExplodingStore(),
        plugins=PluginManager(settings),
        test_config={"TESTING": True},
    )
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        responses = [
            client.get("/api/v1/tasks"),
            client.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000"),
            client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE}),
            client.get("/api/v1/config"),
        ]
    for response in responses:
        assert_error(response, 500, "internal_error")
        text = response.get_data(as_text=True)
        assert "db-internal-secret" not in text
        assert "RuntimeError" not in text and "Traceback" not in text
    assert "unhandled error" in caplog.text  # logged for the operator, not shown to clients


def test_an_unreachable_database_is_503_unavailable(unreachable_database):
    settings = Settings(database_url=unreachable_database.url, load_entry_points=False)
    client = create_app(
        settings,
        store=unreachable_database.store,
        plugins=PluginManager(settings),
        test_config={"TESTING": True},
    ).test_client()
    for response in [
        client.get("/api/v1/tasks"),
        client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE}),
        client.get("/api/v1/config"),
    ]:
        assert_error(response, 503, "unavailable")
        assert response.headers.get("Retry-After")
        assert unreachable_database.internals not in response.get_data(as_text=True)


def test_errors_are_json_even_when_the_client_asks_for_html(client):
    response = client.get("/nope", headers={"Accept": "text/html"})
    assert_error(response, 404, "not_found")
