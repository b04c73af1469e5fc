"""The OpenAPI 3 document of the API, built with apispec from the app's routes and the
marshmallow schemas that validate and shape its JSON.

How a route is documented (apispec's Flask convention): the view's docstring holds a
summary line, then `---`, then YAML with one operation per HTTP method of the route:

    @bp.get("/<task_id>")
    def get_task(task_id: str) -> Response:
        \"\"\"Read one task.
        ---
        get:
          tags: [tasks]
          parameters:
            - {in: path, name: task_id, required: true, schema: {type: string}}
          responses:
            200: {description: The task, content: {application/json: {schema: TaskOutput}}}
            404: {$ref: "#/components/responses/NotFound"}
        \"\"\"

- Schemas are named by their class name without `Schema`: every public marshmallow
  Schema subclass with fields found in a module of SCHEMA_MODULES is a component.
- The summary line is the operation's summary unless the YAML gives one; a Flask path
  parameter (`<task_id>`) becomes `{task_id}`, and one the YAML leaves out is added as a
  required string.
- Added to every operation that lacks them: under /api/v1 the bearer security requirement
  and the 401, 403 and 503 responses; with a request body, 400 and 413; everywhere, 500.
- Routes under UNDOCUMENTED_PREFIXES (pages and files for browsers) are left out; every
  other route must be documented (tests/api/test_openapi.py fails otherwise).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import threading
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_yaml_from_docstring
from flask import Flask
from marshmallow import Schema

import scheduler_core

SCHEMA_MODULES: tuple[str, ...] = (
    "scheduler_core.api.schemas",
    "scheduler_core.api.schemas_common",
    "scheduler_core.api.schemas_completion",
    "scheduler_core.api.schemas_hosts",
    "scheduler_core.api.schemas_queues",
    "scheduler_core.api.schemas_schedules",
    "scheduler_core.api.schemas_stats",
    "scheduler_core.api.schemas_tasks",
    "scheduler_core.runtime_config",
)
# The dashboard's pages and the static files are for browsers, not API clients.
UNDOCUMENTED_PREFIXES: tuple[str, ...] = ("/ui", "/static")
API_PREFIX = "/api/v1"
OPENAPI_VERSION = "3.0.3"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

TAGS = [
    {"name": "tasks", "description": "Enqueue, read, list, reschedule, cancel and retry tasks."},
    {"name": "schedules", "description": "Recurring tasks kept by the server (cron)."},
    {"name": "stats", "description": "Counts, backlog and lateness."},
    {"name": "config", "description": "The runtime configuration of the default queue."},
    {"name": "queues", "description": "Named queues: config, pause, resume, purge, removal."},
    {"name": "plugins", "description": "What the server has loaded."},
    {"name": "operations", "description": "Probes and metrics, open even with API keys."},
    {"name": "reference", "description": "This document, and the page that renders it."},
    {
        "name": "completion",
        "description": "One-time URLs of asynchronous callbacks (Scheduler-Async), "
        "signed; no API key.",
    },
]

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer"},
}
SHARED_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": {
        "description": "The body is not JSON (invalid_json) or a value is refused "
        "(validation_error, field by field in details). Nothing was changed.",
        "content": _ERROR,
    },
    "Unauthorized": {
        "description": "API keys are set and the request has no valid "
        "`Authorization: Bearer <key>` (unauthorized).",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": _ERROR,
    },
    "Forbidden": {
        "description": "The API is open (no keys set) and the request's Host is not this "
        "server's, or it comes from a browser page of an origin not in "
        "SCHEDULER_CORS_ORIGINS: code `forbidden`, details.reason `host_not_allowed` or "
        "`origin_not_allowed`.",
        "content": _ERROR,
    },
    "NotFound": {"description": "No such task (not_found).", "content": _ERROR},
    "Conflict": {
        "description": "The task's state forbids this (conflict); details.status is its status.",
        "content": _ERROR,
    },
    "PayloadTooLarge": {
        "description": "The body is over SCHEDULER_MAX_BODY_BYTES (payload_too_large).",
        "content": _ERROR,
    },
    "Unavailable": {
        "description": "The database is unreachable (unavailable); try again.",
        "headers": {"Retry-After": _RETRY_AFTER},
        "content": _ERROR,
    },
    "InternalError": {
        "description": "An unexpected error (internal_error), without internals.",
        "content": _ERROR,
    },
    # The completion URLs' refusals (api/completion_routes.py).
    "CompletionNotFound": {
        "description": "The token is not genuine, or the task is gone (not_found).",
        "content": _ERROR,
    },
    "CompletionConflict": {
        "description": "The attempt is no longer the one waiting: completed or failed "
        "already, or a later attempt began (conflict).",
        "content": _ERROR,
    },
    "CompletionGone": {
        "description": "The attempt's Scheduler-Async timeout has passed, or the token is "
        "older than two days (gone).",
        "content": _ERROR,
    },
}
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "One of the keys in SCHEDULER_API_KEYS. Needed on every /api/v1 request "
    "when keys are set; when none are, the API is open.",
}
_DEFAULTS_FOR_API = {"401": "Unauthorized", "403": "Forbidden", "503": "Unavailable"}
_DEFAULTS_FOR_BODY = {"400": "BadRequest", "413": "PayloadTooLarge"}
_FLASK_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_CACHE_KEY = "scheduler_openapi"
_build_lock = threading.Lock()


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/tasks/<task_id>` → `/tasks/{task_id}`."""
    return _FLASK_PARAMETER.sub(r"{\1}", rule)


def is_documented_rule(rule: str) -> bool:
    """Whether a route must appear in the document (all but UNDOCUMENTED_PREFIXES)."""
    return not any(
        rule == prefix or rule.startswith(prefix + "/") for prefix in UNDOCUMENTED_PREFIXES
    )


def routes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, OpenAPI path) the app serves that the document must hold; methods
    lowercase, HEAD and OPTIONS (answered by Flask for every route) left out."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not is_documented_rule(rule.rule):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method.lower(), openapi_path(rule.rule)))
    return found


def schema_classes() -> dict[str, type[Schema]]:
    """Component name → Schema class, for every public Schema subclass in SCHEMA_MODULES.

    Raises ValueError when two different classes would take the same name.
    """
    found: dict[str, type[Schema]] = {}
    for module_name in SCHEMA_MODULES:
        module = importlib.import_module(module_name)
        for attribute, value in vars(module).items():
            if (
                attribute.startswith("_")
                or not isinstance(value, type)
                or not issubclass(value, Schema)
                or not value._declared_fields  # a base, like ResponseSchema
            ):
                continue
            name = value.__name__.removesuffix("Schema")
            if found.setdefault(name, value) is not value:
                raise ValueError(
                    f"Two schemas would be named {name!r} in the OpenAPI document: "
                    f"{found[name].__module__}.{found[name].__qualname__} and "
                    f"{value.__module__}.{value.__qualname__}."
                )
    return found


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`, as a JSON-ready dict. Raises what apispec and the
    YAML parser raise on a malformed docstring, and ValueError on a schema name clash."""
    spec = APISpec(
        title="scheduler-core",
        version=scheduler_core.__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": "A self-hosted HTTP callback scheduler: enqueue a webhook call, "
            "get called back on time, with retries and a throttle. Errors are "
            '`{"error": {"code", "message", "details"}}`.',
            "license": {"name": "MIT"},
        },
        tags=TAGS,
    )
    spec.components.security_scheme("bearerAuth", SECURITY_SCHEME)
    classes = schema_classes()
    for name, cls in classes.items():
        if name not in spec.components.schemas:  # else already added as a nested schema
            spec.components.schema(name, schema=cls())
    for name, response in SHARED_RESPONSES.items():
        spec.components.response(name, response)
    for path, operations in _operations_by_path(app).items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    # Class docstrings describe the schemas (nested ones were added without), and a
    # schema's OPENAPI_EXTRA says what marshmallow fields cannot (minProperties, say).
    for name, cls in classes.items():
        component = document["components"]["schemas"].get(name)
        if component is None:
            continue
        if cls.__doc__:
            component.setdefault("description", _paragraphs(cls.__doc__))
        component.update(getattr(cls, "OPENAPI_EXTRA", {}))
    return document


def document_json(app: Flask) -> bytes:
    """The document as JSON bytes, built once per app (on first use, when every route is
    registered) and cached."""
    cached: bytes | None = app.extensions.get(_CACHE_KEY)
    if cached is None:
        with _build_lock:
            cached = app.extensions.get(_CACHE_KEY)
            if cached is None:
                cached = json.dumps(build_document(app)).encode()
                app.extensions[_CACHE_KEY] = cached
    return cached


def document(app: Flask) -> dict[str, Any]:
    """The cached document, parsed (a fresh copy the caller may change)."""
    parsed: dict[str, Any] = json.loads(document_json(app))
    return parsed


def _operations_by_path(app: Flask) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not is_documented_rule(rule.rule):
            continue
        view = app.view_functions[rule.endpoint]
        docstring = view.__doc__ or ""
        loaded = load_yaml_from_docstring(docstring)
        methods = {m.lower() for m in rule.methods or ()} & set(HTTP_METHODS)
        path = openapi_path(rule.rule)
        for method in sorted(methods):
            operation = loaded.get(method)
            if not isinstance(operation, dict):
                continue  # undocumented: the test names it
            operation = dict(operation)
            operation.setdefault("summary", _summary(docstring))
            operation.setdefault("operationId", _operation_id(rule.endpoint, method, methods))
            _complete(operation, path, list(rule.arguments))
            paths.setdefault(path, {})[method] = _in_reading_order(operation)
    return paths


def _complete(operation: dict[str, Any], path: str, arguments: list[str]) -> None:
    """Add the path parameters, security and shared responses an operation leaves out."""
    parameters = operation.setdefault("parameters", [])
    named = {p.get("name") for p in parameters if isinstance(p, dict) and p.get("in") == "path"}
    for argument in sorted(set(arguments) - named):
        parameters.append(
            {"in": "path", "name": argument, "required": True, "schema": {"type": "string"}}
        )
    if not parameters:
        del operation["parameters"]
    responses = operation.setdefault("responses", {})
    present = {str(code) for code in responses}
    defaults: dict[str, str] = {}
    if path.startswith(API_PREFIX + "/"):
        operation.setdefault("security", [{"bearerAuth": []}])
        defaults.update(_DEFAULTS_FOR_API)
    if "requestBody" in operation:
        defaults.update(_DEFAULTS_FOR_BODY)
    defaults["500"] = "InternalError"
    for code, name in defaults.items():
        if code not in present:
            responses[int(code)] = {"$ref": f"#/components/responses/{name}"}


_KEY_ORDER = ("summary", "description", "operationId", "tags", "security", "parameters")


def _in_reading_order(operation: dict[str, Any]) -> dict[str, Any]:
    """Summary first, responses last and by status code: the JSON is read by people too."""
    ordered = {key: operation[key] for key in _KEY_ORDER if key in operation}
    ordered.update((key, value) for key, value in operation.items() if key not in ordered)
    responses = ordered.pop("responses")
    ordered["responses"] = {code: responses[code] for code in sorted(responses, key=str)}
    return ordered


def _summary(docstring: str) -> str:
    return inspect.cleandoc(docstring).split("\n", 1)[0].strip().rstrip(".") if docstring else ""


def _paragraphs(docstring: str) -> str:
    """A docstring as Markdown-ish text: each paragraph on one line."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _operation_id(endpoint: str, method: str, methods: set[str]) -> str:
    """`tasks.get_task` → `tasks_get_task` (with the method when one view serves several)."""
    base = endpoint.replace(".", "_")
    return f"{base}_{method}" if len(methods) > 1 else base
