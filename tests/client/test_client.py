"""scheduler_core.client.Client against the real API, served by the real waitress server on
loopback, on each backend; deliveries by a real dispatcher to a real receiver."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from scheduler_core.client import (
    ApiError,
    Attempt,
    Client,
    Conflict,
    NewTask,
    NotFound,
    Task,
    TransportError,
    Unauthorized,
    ValidationError,
)
from scheduler_core.settings import Settings
from tests.client.conftest import API_KEY, waitress_thread
from tests.client.servers import FakeApi

NOWHERE = "http://127.0.0.1:9/hook"  # nothing listens on the discard port
LATER = datetime(2099, 1, 1, 12, 30, tzinfo=UTC)


def test_enqueue_returns_a_typed_task_that_get_task_reads_back(api: Client) -> None:
    task = api.enqueue(
        "http://127.0.0.1:9/hook?token=abc",
        execute_at=LATER,
        auth="Bearer receiver-secret",
        payload={"report": 7, "tags": ["a"]},
        max_retries=2,
    )

    assert isinstance(task, Task)
    assert task.status == "pending"
    assert task.execute_at == LATER and task.execute_at.tzinfo is not None
    assert task.next_attempt_at == LATER
    assert task.payload == {"report": 7, "tags": ["a"]}
    assert (task.max_retries, task.attempts, task.queue) == (2, 0, "default")
    assert task.webhook_url == "http://127.0.0.1:9/hook?token=***"  # the server masks it
    assert "receiver-secret" not in json.dumps(dict(task.raw))
    assert api.get_task(task.id) == task


def test_execute_at_may_be_a_string_and_defaults_to_now(api: Client) -> None:
    given = api.enqueue(NOWHERE, execute_at="2099-01-01T14:30:00+02:00")
    assert given.execute_at == LATER
    now = api.enqueue(NOWHERE)
    assert abs(now.execute_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert now.payload is None


def test_a_naive_datetime_is_refused_before_anything_is_sent(api: Client) -> None:
    with pytest.raises(ValueError, match="naive"):
        api.enqueue(NOWHERE, execute_at=datetime(2099, 1, 1))
    assert api.list_tasks().tasks == ()


def test_an_idempotency_key_returns_the_first_task(api: Client) -> None:
    first = api.enqueue(NOWHERE, idempotency_key="report-7", payload=1)
    again = api.enqueue(NOWHERE, idempotency_key="report-7", payload=2)
    assert again.id == first.id and again.payload == 1
    assert len(api.list_tasks().tasks) == 1


def test_enqueue_many_keeps_the_order_and_accepts_mappings(api: Client) -> None:
    tasks = api.enqueue_many(
        [
            NewTask(NOWHERE, payload="first"),
            {"webhook_url": NOWHERE, "payload": "second", "execute_at": LATER},
        ]
    )
    assert [t.payload for t in tasks] == ["first", "second"]
    assert tasks[1].execute_at == LATER


def test_a_refused_item_is_named_by_index_and_nothing_is_stored(api: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        api.enqueue_many([NewTask(NOWHERE), NewTask("ftp://example.com/x")])
    error = raised.value
    assert (error.status, error.code) == (400, "validation_error")
    assert "webhookUrl" in error.details["1"]
    assert api.list_tasks().tasks == ()


def test_validation_errors_carry_the_fields(api: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        api.enqueue("not a url", max_retries=-1)
    assert set(raised.value.details) >= {"webhookUrl", "maxRetries"}
    assert "validation_error" in str(raised.value)


def test_an_unknown_task_is_not_found(api: Client) -> None:
    with pytest.raises(NotFound) as raised:
        api.get_task("no-such-task")
    assert (raised.value.status, raised.value.code) == (404, "not_found")
    with pytest.raises(NotFound):
        api.attempts("no-such-task")
    with pytest.raises(NotFound):
        api.cancel("a/b?c")  # quoted in the path, not a different route


def test_list_tasks_pages_and_iter_tasks_walks_them_all(api: Client) -> None:
    created = [api.enqueue(NOWHERE, payload=i, execute_at=LATER) for i in range(5)]
    newest_first = [t.id for t in reversed(created)]

    first = api.list_tasks(limit=2)
    assert [t.id for t in first.tasks] == newest_first[:2]
    assert first.next_cursor is not None
    second = api.list_tasks(limit=2, cursor=first.next_cursor)
    assert [t.id for t in second.tasks] == newest_first[2:4]

    assert [t.id for t in api.iter_tasks(page_size=2)] == newest_first
    assert [t.id for t in api.iter_tasks(status="pending", page_size=3)] == newest_first
    assert list(api.iter_tasks(status="stale")) == []


def test_attempts_are_typed(api: Client, dispatcher, receiver) -> None:
    receiver.behave("/ok", statuses=[200])
    task = api.enqueue(receiver.url("/ok"), payload={"n": 1})
    dispatcher.tick()

    [attempt] = api.attempts(task.id)
    assert isinstance(attempt, Attempt)
    assert (attempt.attempt, attempt.status_code, attempt.outcome) == (1, 200, "resolved")
    assert attempt.started_at.tzinfo is not None
    assert api.get_task(task.id).status == "resolved"
    assert api.get_task(task.id).resolved_at is not None


def test_cancel_and_retry(api: Client, dispatcher, receiver) -> None:
    pending = api.enqueue(NOWHERE, execute_at=LATER)
    assert api.cancel(pending.id).status == "cancelled"
    assert api.cancel(pending.id).status == "cancelled"  # twice is once
    assert api.retry(pending.id).status == "pending"
    with pytest.raises(Conflict) as raised:
        api.retry(pending.id)
    assert raised.value.details == {"status": "pending"}

    receiver.behave("/ok", statuses=[200])
    resolved = api.enqueue(receiver.url("/ok"))
    dispatcher.tick()
    with pytest.raises(Conflict) as raised:
        api.cancel(resolved.id)
    assert (raised.value.status, raised.value.details["status"]) == (409, "resolved")


def test_config_reads_and_changes_in_snake_case(api: Client) -> None:
    config = api.get_config()
    assert config["base_interval_ms"] == 1000 and config["select_size"] == 100
    changed = api.update_config(base_interval_ms=500, select_size=20)
    assert (changed["base_interval_ms"], changed["select_size"]) == (500, 20)
    assert api.get_config() == changed
    with pytest.raises(ValidationError) as raised:
        api.update_config(select_size=0)
    assert "selectSize" in raised.value.details  # the API names keys in camelCase
    assert api.get_config() == changed


def test_plugins_health_and_ready(api: Client) -> None:
    names = [p["name"] for p in api.plugins()]
    assert "scheduler_core.plugins.http_delivery" in names
    assert api.health() is True
    assert api.ready() is True


def test_health_and_ready_are_false_when_nothing_answers() -> None:
    with Client("http://127.0.0.1:9", timeout=2) as api:
        assert api.health() is False
        assert api.ready() is False


def test_ready_is_false_while_the_database_is_unreachable(unreachable_database) -> None:
    from scheduler_core.api import create_app

    settings = Settings(database_url=unreachable_database.url, load_entry_points=False)
    app = create_app(settings, store=unreachable_database.store)
    with waitress_thread(app, settings) as url, Client(url, retries=0) as api:
        assert api.health() is True
        assert api.ready() is False


def test_connection_refused_is_a_transport_error_naming_the_url() -> None:
    with Client("http://127.0.0.1:9", retries=0) as api, pytest.raises(TransportError) as raised:
        api.get_task("x")
    assert "http://127.0.0.1:9/api/v1/tasks/x" in str(raised.value)
    assert "connection refused" in str(raised.value)


def test_an_error_answer_that_is_not_json_is_still_a_clear_api_error() -> None:
    page = (b"<html><body>Bad Gateway</body></html>", b"")
    server = FakeApi(
        {
            ("GET", "/api/v1/tasks/html"): lambda _: (502, {"Content-Type": "text/html"}, page[0]),
            ("GET", "/api/v1/tasks/empty"): lambda _: (418, {}, page[1]),
            ("GET", "/api/v1/tasks/ok-but-html"): lambda _: (200, {}, b"<html>hi</html>"),
        }
    )
    try:
        with Client(server.url, retries=0) as api:
            with pytest.raises(ApiError) as raised:
                api.get_task("html")
            assert (raised.value.status, raised.value.code) == (502, "bad_gateway")
            assert "Bad Gateway" in raised.value.message
            with pytest.raises(ApiError) as raised:
                api.get_task("empty")
            assert (raised.value.status, raised.value.code) == (418, "http_418")
            assert "no body" in raised.value.message
            with pytest.raises(ApiError) as raised:
                api.get_task("ok-but-html")
            assert raised.value.code == "bad_response"
            assert "without JSON" in raised.value.message
    finally:
        server.close()


# -- API keys -------------------------------------------------------------------------------


@pytest.fixture
def keyed_url(clean_database: str, store) -> Iterator[str]:
    from scheduler_core.api import create_app
    from scheduler_core.plugin_manager import PluginManager

    settings = Settings(database_url=clean_database, load_entry_points=False, api_keys=(API_KEY,))
    app = create_app(settings, store=store, plugins=PluginManager(settings))
    with waitress_thread(app, settings) as url:
        yield url


def test_the_api_key_is_sent_and_shown_nowhere(
    keyed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with Client(keyed_url, API_KEY, retries=1, backoff_s=0.01) as api:
        task = api.enqueue(NOWHERE, execute_at=LATER)
        assert api.get_task(task.id).id == task.id
        assert API_KEY not in repr(api)
        with pytest.raises(NotFound) as raised:
            api.get_task("missing")
        assert API_KEY not in str(raised.value) + repr(raised.value)

    with Client(keyed_url, retries=0) as anonymous, pytest.raises(Unauthorized) as raised:
        anonymous.get_task(task.id)
    assert raised.value.code == "unauthorized"
    with Client(keyed_url, "wrong-key", retries=0) as wrong, pytest.raises(Unauthorized):
        wrong.list_tasks()

    with Client("http://127.0.0.1:9", API_KEY, retries=1, backoff_s=0.01) as down:
        with pytest.raises(TransportError) as failed:
            down.get_task("x")
        assert API_KEY not in str(failed.value) + repr(failed.value)
        assert API_KEY not in repr(failed.value.__dict__)
    assert API_KEY not in caplog.text
    assert "retrying" in caplog.text  # the log was captured, and holds no key


def test_a_bad_base_url_is_refused_at_once() -> None:
    for url in ("127.0.0.1:8080", "ftp://host", "http://"):
        with pytest.raises(ValueError, match="http"):
            Client(url)


def test_a_netrc_entry_for_the_host_does_not_replace_the_api_key(
    keyed_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Client(keyed_url, API_KEY, retries=0) as api:
        assert api.list_tasks().tasks == ()
