"""The dashboard served by the real waitress server (as `scheduler serve` runs it), read
with a real HTTP client: what a browser gets for a path the dashboard does not have, and
how a task page shows its last error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
import requests
from flask import Flask

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.settings import Settings
from tests.client.conftest import waitress_thread
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until
from tests.ui.conftest import API_KEY, csrf_of

TIMEOUT = 15


class Served:
    """The dashboard's base URL and a browser-like session signed in to it."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=TIMEOUT, allow_redirects=False, **kwargs)

    def sign_in(self) -> None:
        token = csrf_of(self.get("/ui/login").text)
        signed = self.session.post(
            f"{self.url}/ui/login",
            data={"csrf": token, "key": API_KEY, "next": "/ui/"},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        assert signed.status_code == 303, signed.text

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=TIMEOUT,
            **kwargs,
        )
        assert answer.ok, answer.text
        return answer.json()


@pytest.fixture
def served(keyed_app: Flask, keyed_settings: Settings) -> Iterator[Served]:
    with waitress_thread(keyed_app, keyed_settings) as url:
        yield Served(url)


UNKNOWN = [
    "/ui/nope",
    "/ui/nope/deeper/still",
    "/ui//tasks",
    "/ui/tasks/",
    "/ui/tasks/00000000-0000-4000-8000-000000000000/nope",
    "/ui/%2e%2e/api/v1/tasks",
    "/ui/static/nope.css",
    "/ui/static/",
]


def test_an_unknown_dashboard_path_is_the_dashboards_html_404_page(served: Served) -> None:
    served.sign_in()
    for path in UNKNOWN:
        page = served.get(path)
        assert page.status_code == 404, path
        assert page.headers["Content-Type"].startswith("text/html"), path
        assert "<h1>Not found</h1>" in page.text, path
        assert 'href="/ui/static/ui.css"' in page.text, path  # the dashboard's own page
        if not path.startswith("/ui/static/"):  # signed in, with its links and headers
            assert '<nav aria-label="Dashboard">' in page.text, path
            assert page.headers["Content-Security-Policy"].startswith("default-src 'self'"), path
            assert page.headers["X-Frame-Options"] == "DENY", path
        assert '"error"' not in page.text, path  # not the API's JSON

    # The API keeps its JSON 404, and so does a path that only starts like /ui.
    for path in ("/api/v1/nope", "/uix"):
        answer = served.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found", path


def test_an_unknown_dashboard_path_asks_a_signed_out_visitor_to_sign_in(served: Served) -> None:
    page = served.get("/ui/nope")

    assert page.status_code == 303
    assert page.headers["Location"] == "/ui/login?next=%2Fui%2Fnope"


def test_the_task_page_shows_the_status_code_once(
    served: Served, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    receiver.behave("/fails", statuses=[500], body=b"database on fire")
    [task] = served.api(
        "POST", "/api/v1/tasks", json=[{"webhookUrl": receiver.url("/fails"), "maxRetries": 0}]
    )["tasks"]
    wait_until(
        lambda: (
            dispatcher.tick()
            and served.api("GET", f"/api/v1/tasks/{task['id']}")["status"] == "stale"
        ),
        timeout=15,
        message="for the task to go stale",
    )
    stored = served.api("GET", f"/api/v1/tasks/{task['id']}")
    assert stored["lastStatusCode"] == 500
    assert stored["lastError"].startswith("HTTP 500: ")  # the core names the status itself
    served.sign_in()

    page = served.get(f"/ui/tasks/{task['id']}")

    assert page.status_code == 200
    [shown] = re.findall(r'<pre class="block error-text">(.*?)</pre>', page.text, re.S)
    assert unescape(shown) == stored["lastError"]  # as it is, no "500: " in front
    assert "500: HTTP 500" not in page.text
    assert re.search(r"<dt>lastStatusCode</dt>\s*<dd><span[^>]*>500</span></dd>", page.text)

    # The lists show the error once too: no code chip in front of an error naming it.
    for path in ("/ui/tasks", "/ui/attention"):
        listed = served.get(path)
        assert listed.status_code == 200, path
        [cell] = re.findall(r'<td class="error"[^>]*>(.*?)</td>', listed.text, re.S)
        assert unescape(cell).startswith("HTTP 500: database on fire"), (path, cell)
        assert '<span class="code">' not in cell, path
