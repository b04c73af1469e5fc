"""The target policy end to end: refused at enqueue with a 400 naming the rule, and at
delivery against every address a name resolves to, with the receiver never called.

Names are resolved through a replacement for socket.getaddrinfo that maps test names
to chosen addresses (the scheduler's resolver reads socket.getaddrinfo at call time)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store
from scheduler_core.targets import TargetPolicy
from tests.api.helpers import assert_error, task_count
from tests.conftest import set_config


class MappedNames:
    """getaddrinfo answering chosen addresses for chosen names, the real one otherwise."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        target = self.names.get(str(host).lower().rstrip("."), host)
        return self._real(target, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> MappedNames:
    mapped = MappedNames()
    monkeypatch.setattr(socket, "getaddrinfo", mapped)
    return mapped


Scheduler = tuple[FlaskClient, Dispatcher]


@pytest.fixture
def scheduler(settings: Settings, store: Store) -> Iterator[Callable[..., Scheduler]]:
    """Build the API and a dispatcher with SCHEDULER_ALLOWED/DENIED_TARGETS values."""
    made: list[Dispatcher] = []

    def make(allowed: str | None = None, denied: str | None = None) -> Scheduler:
        policy = TargetPolicy.from_settings(allowed, denied)
        configured = dataclasses.replace(settings, target_policy=policy)
        plugins = PluginManager(configured)
        app = create_app(configured, store=store, plugins=plugins, test_config={"TESTING": True})
        dispatcher = Dispatcher(store, plugins)
        made.append(dispatcher)
        return app.test_client(), dispatcher

    yield make
    for dispatcher in made:
        dispatcher.stop(wait=True)


def test_a_denied_address_is_a_400_naming_the_rule(scheduler, store, receiver) -> None:
    client, _ = scheduler(denied="127.0.0.0/8")
    for url in (receiver.url("/x"), "http://127.1:9/x", "http://0x7f000001/x", "http://localhost/"):
        response = client.post("/api/v1/tasks", json={"webhookUrl": url})
        body = assert_error(response, 400, "validation_error")
        assert "127.0.0.0/8" in str(body), body
    assert task_count(store) == 0


def test_allowed_targets_refuse_everything_else_at_enqueue(scheduler, store) -> None:
    client, _ = scheduler(allowed="*.hooks.example api.partner.example")
    assert (
        client.post("/api/v1/tasks", json={"webhookUrl": "https://a.hooks.example/x"}).status_code
        == 201
    )
    refused = client.post("/api/v1/tasks", json={"webhookUrl": "https://evil.example/x"})
    assert "SCHEDULER_ALLOWED_TARGETS" in str(assert_error(refused, 400, "validation_error"))
    assert task_count(store) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18211\\@127.0.0.1:18210/x",  # the checked host is not the called one
        "http://a@b@127.0.0.1/x",
        "http://exa^mple.com/",
        "http://example.com%2e/",
        "http://example.123/",
        "http://a..b/",
        "http://" + "x" * 64 + ".example/",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_urls_parsers_could_read_differently_or_that_cannot_resolve_are_refused(
    scheduler, store, url
) -> None:
    client, _ = scheduler()
    assert_error(client.post("/api/v1/tasks", json={"webhookUrl": url}), 400, "validation_error")
    assert task_count(store) == 0


def test_a_name_resolving_to_a_denied_address_is_refused_at_delivery(
    scheduler, store, receiver, dns
) -> None:
    # The name passes at enqueue (no lookup then); at delivery it resolves to loopback.
    dns.names["hooks.rebind.test"] = "127.0.0.1"
    set_config(store, max_retries=0)
    client, dispatcher = scheduler(denied="127.0.0.0/8")
    url = f"http://hooks.rebind.test:{receiver.port}/hook"
    created = client.post("/api/v1/tasks", json={"webhookUrl": url})
    assert created.status_code == 201
    dispatcher.tick()
    task = client.get(f"/api/v1/tasks/{created.get_json()['id']}").get_json()
    assert task["status"] == "stale"
    assert task["lastError"].startswith("target refused: hooks.rebind.test (127.0.0.1)")
    assert "127.0.0.0/8" in task["lastError"]
    assert receiver.calls() == []


def test_the_same_name_is_called_when_the_policy_allows_its_address(
    scheduler, store, receiver, dns
) -> None:
    dns.names["hooks.rebind.test"] = "127.0.0.1"
    client, dispatcher = scheduler(allowed="127.0.0.0/8")
    url = f"http://hooks.rebind.test:{receiver.port}/hook"
    created = client.post("/api/v1/tasks", json={"webhookUrl": url})
    assert created.status_code == 201
    dispatcher.tick()
    assert (
        client.get(f"/api/v1/tasks/{created.get_json()['id']}").get_json()["status"] == "resolved"
    )
    assert len(receiver.calls("/hook")) == 1


def test_a_name_resolving_to_metadata_is_never_called(scheduler, store, dns) -> None:
    dns.names["metadata.rebind.test"] = "169.254.169.254"
    set_config(store, max_retries=0)
    client, dispatcher = scheduler(allowed="0.0.0.0/0 ::/0")
    created = client.post("/api/v1/tasks", json={"webhookUrl": "http://metadata.rebind.test/x"})
    assert created.status_code == 201
    dispatcher.tick()
    task = client.get(f"/api/v1/tasks/{created.get_json()['id']}").get_json()
    assert task["status"] == "stale" and "metadata" in task["lastError"]


def test_an_address_spelt_with_a_trailing_dot_or_short_form_is_called_at_that_address(
    scheduler, store, receiver
) -> None:
    client, dispatcher = scheduler()
    ids = []
    for host in ("127.0.0.1.", "127.1", "0x7f000001"):
        created = client.post(
            "/api/v1/tasks", json={"webhookUrl": f"http://{host}:{receiver.port}/spelt"}
        )
        assert created.status_code == 201, created.get_json()
        ids.append(created.get_json()["id"])
    dispatcher.tick()
    for task_id in ids:
        task = client.get(f"/api/v1/tasks/{task_id}").get_json()
        assert task["status"] == "resolved", task
    assert len(receiver.calls("/spelt")) == 3
