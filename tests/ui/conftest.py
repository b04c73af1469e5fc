"""Fixtures of the dashboard tests: an app with API keys, a signed-in test client, and a
headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no browser is
downloaded). Without chromium the browser tests are skipped, except under CI=true, where
that fails them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scheduler_core.api import create_app
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store

API_KEY = "ui-test-key-1"
CHROMIUM = Path(os.environ.get("SCHEDULER_TEST_CHROMIUM", "/usr/bin/chromium"))
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(html)
    assert match, "the page has no form token"
    return match.group(1)


@pytest.fixture
def keyed_settings(settings: Settings) -> Settings:
    return Settings(
        database_url=settings.database_url, load_entry_points=False, api_keys=(API_KEY,)
    )


@pytest.fixture
def keyed_app(keyed_settings: Settings, store: Store) -> Flask:
    return create_app(
        keyed_settings,
        store=store,
        plugins=PluginManager(keyed_settings),
        test_config={"TESTING": True},
    )


class Dashboard:
    """A test client signed in to /ui, with the helpers a form needs."""

    def __init__(self, client: FlaskClient):
        self.client = client
        self.token = ""

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(path, **kwargs)
        if 'name="csrf"' in response.text:
            self.token = csrf_of(response.text)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        if not self.token:
            self.get("/ui/login")
        return self.client.post(path, data={"csrf": self.token, **(data or {})}, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)


@pytest.fixture
def dashboard(keyed_app: Flask) -> Dashboard:
    """Signed in with the API key through the login form."""
    board = Dashboard(keyed_app.test_client())
    board.get("/ui/login")
    signed = board.post("/ui/login", {"key": API_KEY, "next": "/ui/"})
    assert signed.status_code == 303, signed.text
    board.get("/ui/")  # signing in renewed the form token
    return board


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright's Browser)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if in_ci():
            pytest.fail(f"{message}; CI=true: the dashboard's browser tests must run")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()
