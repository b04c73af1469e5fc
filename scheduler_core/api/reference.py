"""`GET /api/v1/openapi.json` (the OpenAPI document) and `GET /docs` (a reference page
rendered from it on the server: no script, no CDN, nothing but the package's template).

/docs is open even with API keys set: it shows what the code declares, nothing stored.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, render_template
from markupsafe import Markup, escape

from scheduler_core.api.openapi import HTTP_METHODS, TAGS, document, document_json

bp = Blueprint("reference", __name__, template_folder="templates")

_PAGE_KEY = "scheduler_docs_page"
_page_lock = threading.Lock()
_OTHER_TAG = "other"
# The page's icon: the dashboard's, inlined as a data: URL (no request, so a browser has no
# /favicon.ico to ask for and log a 404 about; /docs sends no Content-Security-Policy).
_FAVICON = ("scheduler_core.ui", "static/favicon.svg")
_NO_ICON = "data:,"  # an empty icon: still no request


def favicon_url() -> str:
    """The dashboard's SVG icon as a `data:` URL (base64: no quote or `://` in the page);
    an empty one if the file is missing from the installation."""
    package, name = _FAVICON
    try:
        svg = resources.files(package).joinpath(name).read_bytes()
    except OSError:
        return _NO_ICON
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3 document of this API.
    ---
    get:
      tags: [reference]
      description: >-
        Generated from the routes and the marshmallow schemas that validate requests and
        shape responses. Behind the API keys like the rest of /api/v1.
      responses:
        200:
          description: The OpenAPI 3.0 document.
          content: {application/json: {schema: {type: object}}}
    """
    return Response(document_json(current_app), mimetype="application/json")


@bp.get("/docs")
def docs_page() -> Response:
    """The API reference page.
    ---
    get:
      tags: [reference]
      description: >-
        The OpenAPI document rendered as one HTML page: operations by tag, parameters,
        request and response schemas, error codes. Open without an API key; its assets
        ship in the package.
      responses:
        200:
          description: An HTML page.
          content: {text/html: {schema: {type: string}}}
    """
    page: str | None = current_app.extensions.get(_PAGE_KEY)
    if page is None:
        with _page_lock:
            page = current_app.extensions.get(_PAGE_KEY)
            if page is None:
                model = page_model(document(current_app))
                page = render_template("api_reference/index.html", favicon=favicon_url(), **model)
                current_app.extensions[_PAGE_KEY] = page
    return Response(page, mimetype="text/html")


def page_model(doc: dict[str, Any]) -> dict[str, Any]:
    """What the template shows, from the OpenAPI document: `info`, `groups` (a tag with
    its operations, in TAGS order, then any other tag), `schemas`, `error_codes`."""
    reader = _Reader(doc)
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, item in doc.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                operation = reader.operation(method, path, item[method])
                for tag in item[method].get("tags") or [_OTHER_TAG]:
                    groups.setdefault(tag, []).append(operation)
    described = {t["name"]: t.get("description", "") for t in TAGS + doc.get("tags", [])}
    order = [t["name"] for t in TAGS]
    names = sorted(groups, key=lambda t: (order.index(t) if t in order else len(order), t))
    error_schema = doc.get("components", {}).get("schemas", {}).get("ErrorBody", {})
    info = doc.get("info", {})
    return {
        "info": {**info, "description": prose(info.get("description"))},
        "groups": [
            {
                "name": name,
                "description": prose(described.get(name)),
                "operations": groups[name],
            }
            for name in names
        ],
        "schemas": [
            reader.schema_entry(name, schema)
            for name, schema in sorted(doc.get("components", {}).get("schemas", {}).items())
        ],
        "error_codes": error_schema.get("properties", {}).get("code", {}).get("enum", []),
        "shared_responses": [
            {"name": name, "description": prose(response.get("description"))}
            for name, response in doc.get("components", {}).get("responses", {}).items()
        ],
    }


class _Reader:
    """Turns pieces of the document into what the template prints. Every string taken
    from the document is escaped here before it is marked safe."""

    def __init__(self, doc: dict[str, Any]):
        self.components = doc.get("components", {})

    def resolve(self, value: Any) -> Any:
        """Follow a `#/components/<kind>/<name>` reference (once is all the document uses
        outside schemas)."""
        if isinstance(value, dict) and isinstance(value.get("$ref"), str):
            parts = value["$ref"].removeprefix("#/components/").split("/")
            if len(parts) == 2:
                return self.components.get(parts[0], {}).get(parts[1], value)
        return value

    def operation(self, method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
        body = op.get("requestBody")
        return {
            "anchor": f"op-{method}-{_slug(path)}",
            "method": method.upper(),
            "path": path,
            "summary": op.get("summary", ""),
            "description": prose(op.get("description", "")),
            "operation_id": op.get("operationId", ""),
            "secured": bool(op.get("security")),
            "parameters": [self.parameter(self.resolve(p)) for p in op.get("parameters", [])],
            "body": self.body(self.resolve(body)) if body else None,
            "responses": [
                self.response(str(code), response, self.resolve(response))
                for code, response in sorted(op.get("responses", {}).items())
            ],
        }

    def parameter(self, parameter: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": parameter.get("name", ""),
            "where": parameter.get("in", ""),
            "required": bool(parameter.get("required")),
            "type": self.type_html(parameter.get("schema", {})),
            "description": prose(parameter.get("description", "")),
        }

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "required": bool(body.get("required")),
            "description": prose(body.get("description", "")),
            "content": self.content(body.get("content", {})),
        }

    def response(self, code: str, given: Any, response: dict[str, Any]) -> dict[str, Any]:
        shared = given.get("$ref", "").rpartition("/")[2] if isinstance(given, dict) else ""
        return {
            "code": code,
            "shared": shared,
            "description": prose(response.get("description", "")),
            "headers": sorted(response.get("headers", {})),
            "content": self.content(response.get("content", {})),
        }

    def content(self, content: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"media_type": media, "type": self.type_html(entry.get("schema", {}))}
            for media, entry in content.items()
        ]

    def schema_entry(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        required = set(schema.get("required", []))
        return {
            "name": name,
            "anchor": f"schema-{_slug(name)}",
            "description": prose(schema.get("description", "")),
            "type": self.type_html(schema) if "properties" not in schema else None,
            "closed": schema.get("additionalProperties") is False,
            "properties": [
                {
                    "name": prop,
                    "type": self.type_html(value),
                    "required": prop in required,
                    "description": prose(value.get("description", "")),
                    "write_only": bool(value.get("writeOnly")),
                }
                for prop, value in schema.get("properties", {}).items()
            ],
        }

    def type_html(self, schema: Any) -> Markup:
        """A schema in a few words, references as links: `array of <a>TaskOutput</a>`."""
        if not isinstance(schema, dict) or not schema:
            return Markup("any JSON value")
        if "$ref" in schema:
            name = str(schema["$ref"]).rpartition("/")[2]
            return Markup('<a href="#schema-{}">{}</a>').format(_slug(name), name)
        for keyword, joiner in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")):
            if keyword in schema:
                return Markup(joiner).join(self.type_html(s) for s in schema[keyword])
        kind = schema.get("type")
        if kind == "array":
            text = Markup("array of ") + self.type_html(schema.get("items", {}))
        elif kind:
            text = escape(kind)
            if schema.get("format"):
                text += Markup(" (") + escape(schema["format"]) + Markup(")")
        else:
            text = Markup("any JSON value")
        shown = [v for v in schema.get("enum", []) if v is not None]  # null: "or null" below
        if shown:
            text += Markup(": ") + Markup(" | ").join(
                Markup("<code>{}</code>").format(v if isinstance(v, str) else json.dumps(v))
                for v in shown
            )
        limits = [
            f"{label} {schema[key]}"
            for key, label in (
                ("minimum", "≥"),
                ("maximum", "≤"),
                ("minLength", "length ≥"),
                ("maxLength", "length ≤"),
                ("minItems", "items ≥"),
                ("maxItems", "items ≤"),
            )
            if key in schema
        ]
        if "default" in schema:
            limits.append(f"default {json.dumps(schema['default'])}")
        if limits:
            text += Markup(", ") + escape(", ".join(limits))
        if schema.get("nullable"):
            text += Markup(", or null")
        return text


_CODE_SPAN = re.compile(r"`([^`]+)`")


def prose(text: Any) -> Markup:
    """A description from the document as HTML: escaped, `code spans` as <code>."""
    escaped = str(escape(str(text or "")))
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", escaped))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")
