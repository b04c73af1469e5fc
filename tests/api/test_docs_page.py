"""GET /docs: the API reference page, rendered on the server from the OpenAPI document,
open without a key, with nothing fetched from another host."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from flask import Blueprint

from scheduler_core.api import create_app
from scheduler_core.api.errors import ERROR_CODES
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from tests.client.conftest import waitress_thread

METHODS = ("get", "put", "post", "patch", "delete")


class Page(HTMLParser):
    """The page's ids, links, resource references and visible text."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.sources: list[str] = []
        self.icons: list[str] = []
        self.tags: list[str] = []
        self.operations: set[tuple[str, str]] = set()
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "a" and values.get("href") is not None:
            self.hrefs.append(values["href"] or "")
        for name in ("src", "srcset", "action", "poster", "data"):
            if values.get(name):
                self.sources.append(values[name] or "")
        if tag == "link" and values.get("rel") == "icon":
            self.icons.append(values.get("href") or "")
        elif tag == "link" and values.get("href"):
            self.sources.append(values["href"] or "")
        if tag == "article" and values.get("data-method"):
            self.operations.add(
                ((values["data-method"] or "").lower(), values.get("data-path") or "")
            )

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


@pytest.fixture
def page(client) -> Page:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return Page(response.get_data(as_text=True))


def test_docs_lists_every_operation_of_the_document(doc, page):
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }

    assert page.operations == documented
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                assert item[method]["summary"] in " ".join(page.text), (method, path)


def test_docs_shows_schemas_fields_and_error_codes(doc, page):
    text = " ".join(page.text)
    for name, schema in doc["components"]["schemas"].items():
        assert f"schema-{name}" in page.ids, name
        for field in schema.get("properties", {}):
            assert field in text, (name, field)
    for code in ERROR_CODES:
        assert code in text
    assert "Retries after the first attempt" in text  # a field's description


def test_every_link_on_the_page_goes_somewhere_on_it_or_to_the_document(page):
    for href in page.hrefs:
        if href.startswith("#"):
            assert href[1:] in page.ids, href
        else:
            assert urlsplit(urljoin("http://scheduler.test/docs", href)).path == (
                "/api/v1/openapi.json"
            ), href
    assert any(
        urljoin("http://scheduler.test/docs", href) == "http://scheduler.test/api/v1/openapi.json"
        for href in page.hrefs
    )


def test_the_page_needs_nothing_from_another_host(client, page):
    html = client.get("/docs").get_data(as_text=True)

    assert "://" not in html  # no absolute URL at all, so no CDN, font or analytics host
    assert not re.search(r"""(?:href|src)\s*=\s*["']//""", html)  # nor protocol-relative
    assert "script" not in page.tags  # rendered on the server: no script to load anything
    assert page.sources == []  # no images, stylesheets or frames to fetch
    assert [icon.split(",")[0] for icon in page.icons] == ["data:image/svg+xml;base64"]
    assert "@import" not in html and "url(" not in html


def test_docs_opens_without_a_key_when_keys_are_set(clean_database, store):
    settings = Settings(database_url=clean_database, api_keys=("k1",), load_entry_points=False)
    client = create_app(settings, store=store, plugins=PluginManager(settings)).test_client()

    response = client.get("/docs")

    assert response.status_code == 200
    assert "/api/v1/tasks" in response.get_data(as_text=True)
    assert client.get("/api/v1/openapi.json").status_code == 401  # the JSON keeps its key
    assert "k1" not in response.get_data(as_text=True)


def test_docs_escapes_what_the_document_says(settings, store):
    app = create_app(settings, store=store, plugins=PluginManager(settings))
    extra = Blueprint("hostile", __name__)

    @extra.get("/api/v1/hostile/<thing>")
    def hostile(thing: str) -> str:
        """Summary <img src=x onerror=alert(1)>.
        ---
        get:
          tags: ["<b>tag</b>"]
          description: "<script>alert('description')</script> and `<code>`"
          parameters:
            - {in: path, name: thing, required: true, description: "\\"><svg onload=alert(2)>"}
          responses:
            200: {description: "<iframe src=//evil.example>"}
        """
        return thing

    app.register_blueprint(extra)
    html = app.test_client().get("/docs").get_data(as_text=True)

    for raw in ("<script", "<img", "<svg", "<iframe", "<b>tag"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<code>&lt;code&gt;</code>" in html  # a code span, its content escaped


def test_the_page_has_its_icon_inline_so_a_browser_asks_for_none(app, settings):
    """Without a <link rel="icon">, a browser asks for /favicon.ico, gets the API's 404 and
    logs it in the console. The icon is inline, and nothing on /docs forbids a data: URL."""
    with waitress_thread(app, settings) as url:
        answer = requests.get(f"{url}/docs", timeout=15)
        assert requests.get(f"{url}/favicon.ico", timeout=15).status_code == 404

    assert answer.status_code == 200
    [icon] = Page(answer.text).icons
    kind, _, data = icon.partition(",")
    assert kind == "data:image/svg+xml;base64"
    svg = base64.b64decode(data, validate=True).decode()
    assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
    policy = answer.headers.get("Content-Security-Policy")
    assert policy is None or re.search(r"img-src[^;]*\bdata:", policy), policy
