"""GET /api/v1/openapi.json: a valid OpenAPI 3 document of every route, generated from the
marshmallow schemas, that real responses conform to."""

from __future__ import annotations

import copy
import importlib
from typing import Any

import pytest
from flask import Flask
from marshmallow import Schema
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec

import scheduler_core
from scheduler_core.api import create_app
from scheduler_core.api.errors import ERROR_CODES
from scheduler_core.api.fast_path import INPUT_FIELDS
from scheduler_core.api.openapi import (
    SCHEMA_MODULES,
    UNDOCUMENTED_PREFIXES,
    is_documented_rule,
    openapi_path,
)
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.runtime_config import BOUNDS, to_camel
from scheduler_core.settings import Settings
from tests.api.helpers import FUTURE, NOWHERE, TASK_FIELDS

# SPEC.md, "Precise answers": the error codes a client may meet.
SPEC_ERROR_CODES = {
    "invalid_json",
    "validation_error",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "gone",
    "payload_too_large",
    "unavailable",
    "internal_error",
}
SHARED_RESPONSES = {
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "Unavailable",
    "InternalError",
    "CompletionNotFound",
    "CompletionConflict",
    "CompletionGone",
}
METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture
def doc(client) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def served_routes(app: Flask) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app serves, read from Flask's URL map
    here rather than through the module under test."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not is_documented_rule(rule.rule):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method.lower(), openapi_path(rule.rule)))
    return found


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def resolve(doc: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    ref = value.get("$ref")
    if ref is None:
        return value
    kind, name = ref.removeprefix("#/components/").split("/")
    return doc["components"][kind][name]


def closed(components: dict[str, Any]) -> dict[str, Any]:
    """The components with every object schema closed (additionalProperties: false), so a
    response holding a field its schema does not describe fails validation. (The document
    leaves response schemas open for clients' sake: new fields may come.)"""
    result = copy.deepcopy(components)

    def close(schema: Any) -> None:
        if isinstance(schema, dict):
            if "properties" in schema and "additionalProperties" not in schema:
                schema["additionalProperties"] = False
            for value in schema.values():
                close(value)
        elif isinstance(schema, list):
            for value in schema:
                close(value)

    close(result.get("schemas", {}))
    return result


def assert_conforms(doc: dict[str, Any], method: str, path: str, response: Any) -> Any:
    """The response's status is documented for the operation and its JSON body validates
    against the documented schema (closed). Returns the body."""
    operation = doc["paths"][path][method]
    code = str(response.status_code)
    assert code in operation["responses"], (
        f"{method.upper()} {path} answered {code}, which is not documented: "
        f"{response.get_data(as_text=True)[:300]}"
    )
    documented = resolve(doc, operation["responses"][code])
    content = documented.get("content", {})
    assert response.mimetype in content, (method, path, code, response.mimetype)
    if response.mimetype != "application/json":
        return response.get_data(as_text=True)
    body = response.get_json()
    schema = {"components": closed(doc["components"]), **content[response.mimetype]["schema"]}
    OAS30ReadValidator(schema, format_checker=oas30_format_checker).validate(body)
    return body


# -- the document ----------------------------------------------------------------------


def test_the_document_is_valid_openapi_3(doc):
    validate_spec(doc)  # raises, naming what is wrong

    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "scheduler-core"
    assert doc["info"]["version"] == scheduler_core.__version__


def test_the_document_is_built_once_per_app_and_is_the_same_on_every_request(app, client):
    first = client.get("/api/v1/openapi.json").get_data()
    second = client.get("/api/v1/openapi.json").get_data()

    assert first == second
    assert app.extensions["scheduler_openapi"] == first


def test_every_route_is_documented(app, doc):
    missing = served_routes(app) - documented_operations(doc)

    assert not missing, (
        "routes without a documented operation (add YAML to the view's docstring, see "
        f"scheduler_core/api/openapi.py): {sorted(missing)}"
    )


def test_every_documented_operation_is_served(app, doc):
    assert documented_operations(doc) <= served_routes(app)


def test_the_routes_this_issue_names_are_there(doc):
    operations = documented_operations(doc)
    for expected in [
        ("post", "/api/v1/tasks"),
        ("get", "/api/v1/tasks"),
        ("get", "/api/v1/tasks/{task_id}"),
        ("delete", "/api/v1/tasks/{task_id}"),
        ("get", "/api/v1/tasks/{task_id}/attempts"),
        ("post", "/api/v1/tasks/{task_id}/retry"),
        ("get", "/api/v1/config"),
        ("patch", "/api/v1/config"),
        ("get", "/api/v1/plugins"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/docs"),
    ]:
        assert expected in operations, expected


def test_only_pages_and_files_for_browsers_are_left_out():
    assert UNDOCUMENTED_PREFIXES == ("/ui", "/static")
    for rule in ["/ui", "/ui/", "/ui/tasks/<task_id>", "/static/<path:filename>"]:
        assert not is_documented_rule(rule), rule
    for rule in ["/uix", "/api/v1/ui", "/docs", "/metrics", "/api/v1/tasks"]:
        assert is_documented_rule(rule), rule


def test_flask_path_parameters_become_openapi_ones():
    assert openapi_path("/api/v1/tasks/<task_id>/attempts") == "/api/v1/tasks/{task_id}/attempts"
    assert openapi_path("/files/<path:name>/<int:n>") == "/files/{name}/{n}"
    assert openapi_path("/api/v1/tasks:retry") == "/api/v1/tasks:retry"


def test_a_route_added_without_documentation_is_caught(settings, store):
    app = create_app(settings, store=store, plugins=PluginManager(settings))

    @app.get("/api/v1/undocumented/<thing>")
    def undocumented(thing: str) -> str:  # no YAML docstring
        return thing

    doc = app.test_client().get("/api/v1/openapi.json").get_json()

    assert ("get", "/api/v1/undocumented/{thing}") in served_routes(app)
    assert ("get", "/api/v1/undocumented/{thing}") not in documented_operations(doc)


def test_api_operations_need_the_bearer_key_and_probes_and_pages_do_not(doc):
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for method, path in documented_operations(doc):
        operation = doc["paths"][path][method]
        if path.startswith("/api/v1/"):
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert operation["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
        else:
            assert "security" not in operation, (method, path)
    assert "security" not in doc  # no global requirement: /healthz, /docs... are open


def test_every_operation_is_summarised_tagged_and_answers_something(doc):
    ids = []
    for method, path in documented_operations(doc):
        operation = doc["paths"][path][method]
        assert operation["summary"], (method, path)
        assert operation["tags"], (method, path)
        assert any(code.startswith("2") for code in operation["responses"]), (method, path)
        assert "500" in operation["responses"], (method, path)
        if "requestBody" in operation:
            assert {"400", "413"} <= set(operation["responses"]), (method, path)
        ids.append(operation["operationId"])
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in path
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_the_shared_error_responses_are_the_error_envelope(doc):
    responses = doc["components"]["responses"]

    assert set(responses) == SHARED_RESPONSES
    for response in responses.values():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    body = doc["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"code", "message", "details"}
    assert set(body["properties"]["code"]["enum"]) == set(ERROR_CODES)
    assert set(ERROR_CODES) >= SPEC_ERROR_CODES


def test_every_schema_class_is_a_component_named_without_schema(doc):
    components = doc["components"]["schemas"]
    for module_name in SCHEMA_MODULES:
        module = importlib.import_module(module_name)
        for attribute, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, Schema)
                and not attribute.startswith("_")
                and value._declared_fields
            ):
                assert value.__name__.removesuffix("Schema") in components, value


def test_every_field_of_every_schema_is_described(doc):
    undescribed = [
        f"{name}.{field}"
        for name, schema in doc["components"]["schemas"].items()
        for field, value in schema.get("properties", {}).items()
        # A reference, or a list of them, is described by the schema it names.
        if "description" not in value and "$ref" not in value.get("items", value)
    ]

    assert not undescribed, "add metadata={'description': ...} to these fields: " + ", ".join(
        undescribed
    )
    for name, schema in doc["components"]["schemas"].items():
        assert schema.get("description"), f"schema {name} has no docstring"


def test_the_task_output_schema_describes_every_field_a_task_shows(doc, client):
    created = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": FUTURE})
    task = client.get(f"/api/v1/tasks/{created.get_json()['id']}").get_json()
    schema = doc["components"]["schemas"]["TaskOutput"]

    assert set(schema["properties"]) == set(task) == TASK_FIELDS
    assert set(schema["required"]) == set(task)  # every field is always there
    assert "webhookAuth" not in schema["properties"]
    assert schema["properties"]["status"]["enum"] == [
        "pending",
        "running",
        "resolved",
        "stale",
        "cancelled",
    ]


def test_the_task_input_schema_lists_what_enqueue_reads_and_refuses_the_rest(doc):
    schema = doc["components"]["schemas"]["TaskInput"]

    assert set(schema["properties"]) == INPUT_FIELDS
    assert schema["required"] == ["webhookUrl"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["webhookAuth"]["writeOnly"] is True
    body = doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    single, array = body["schema"]["oneOf"]
    assert single == {"$ref": "#/components/schemas/TaskInput"}
    assert array["items"] == single
    assert (array["minItems"], array["maxItems"]) == (1, 1000)


def test_the_config_schemas_carry_every_key_with_its_bounds(doc, client):
    patch = doc["components"]["schemas"]["ConfigPatch"]
    shown = doc["components"]["schemas"]["Config"]
    config = client.get("/api/v1/config").get_json()

    assert list(patch["properties"]) == list(shown["properties"]) == list(config)
    assert list(config) == [to_camel(column) for column in BOUNDS]
    assert patch["additionalProperties"] is False
    assert "required" not in patch  # a PATCH names some keys
    assert set(shown["required"]) == set(config)
    for column, bound in BOUNDS.items():
        for schema in (patch, shown):
            field = schema["properties"][to_camel(column)]
            assert field["type"] == "integer"
            assert (field["minimum"], field["maximum"]) == (bound.minimum, bound.maximum)
            assert bound.meaning in field["description"]


# -- real responses conform -----------------------------------------------------------


def test_task_responses_conform(doc, client, dispatcher, receiver):
    receiver.behave("/ok", statuses=[200])
    receiver.behave("/down", statuses=[500])
    created = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/ok"), "idempotencyKey": "k1", "payload": {"a": [1]}},
    )
    task = assert_conforms(doc, "post", "/api/v1/tasks", created)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    repeat = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "idempotencyKey": "k1"})
    assert repeat.status_code == 200
    assert assert_conforms(doc, "post", "/api/v1/tasks", repeat)["id"] == task["id"]
    array = client.post(
        "/api/v1/tasks",
        json=[{"webhookUrl": receiver.url("/down"), "maxRetries": 0}, {"webhookUrl": NOWHERE}],
    )
    assert array.status_code == 201
    failing, later = assert_conforms(doc, "post", "/api/v1/tasks", array)["tasks"]

    dispatcher.tick()

    resolved = assert_conforms(
        doc, "get", "/api/v1/tasks/{task_id}", client.get(f"/api/v1/tasks/{task['id']}")
    )
    assert resolved["status"] == "resolved" and resolved["resolvedAt"]
    stale = client.get(f"/api/v1/tasks/{failing['id']}")
    assert assert_conforms(doc, "get", "/api/v1/tasks/{task_id}", stale)["status"] == "stale"
    for task_id in (task["id"], failing["id"], later["id"]):
        attempts = client.get(f"/api/v1/tasks/{task_id}/attempts")
        assert_conforms(doc, "get", "/api/v1/tasks/{task_id}/attempts", attempts)
    outcomes = {
        a["outcome"]
        for t in (task, failing)
        for a in client.get(f"/api/v1/tasks/{t['id']}/attempts").get_json()["attempts"]
    }
    assert outcomes == {"resolved", "failed"}
    page = assert_conforms(doc, "get", "/api/v1/tasks", client.get("/api/v1/tasks?limit=2"))
    assert len(page["tasks"]) == 2 and page["nextCursor"]
    assert_conforms(doc, "get", "/api/v1/tasks", client.get("/api/v1/tasks?status=stale"))
    retried = client.post(f"/api/v1/tasks/{failing['id']}/retry")
    assert assert_conforms(doc, "post", "/api/v1/tasks/{task_id}/retry", retried)
    cancelled = client.delete(f"/api/v1/tasks/{later['id']}")
    assert assert_conforms(doc, "delete", "/api/v1/tasks/{task_id}", cancelled)


def test_error_responses_conform(doc, client):
    pending = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE}).get_json()
    cases = [
        ("post", "/api/v1/tasks", client.post("/api/v1/tasks", data=b"{nope")),
        ("post", "/api/v1/tasks", client.post("/api/v1/tasks", json={"webhookURL": NOWHERE})),
        ("post", "/api/v1/tasks", client.post("/api/v1/tasks", json=[])),
        ("post", "/api/v1/tasks", client.post("/api/v1/tasks", json=[{"webhookUrl": 1}])),
        ("get", "/api/v1/tasks", client.get("/api/v1/tasks?limit=0")),
        ("get", "/api/v1/tasks", client.get("/api/v1/tasks?status=lost")),
        ("get", "/api/v1/tasks", client.get("/api/v1/tasks?cursor=zz")),
        ("get", "/api/v1/tasks/{task_id}", client.get("/api/v1/tasks/nope")),
        ("get", "/api/v1/tasks/{task_id}/attempts", client.get("/api/v1/tasks/nope/attempts")),
        ("delete", "/api/v1/tasks/{task_id}", client.delete("/api/v1/tasks/nope")),
        ("post", "/api/v1/tasks/{task_id}/retry", client.post("/api/v1/tasks/nope/retry")),
        (
            "post",
            "/api/v1/tasks/{task_id}/retry",
            client.post(f"/api/v1/tasks/{pending['id']}/retry"),
        ),
        ("patch", "/api/v1/config", client.patch("/api/v1/config", json={"selectSize": 0})),
        ("patch", "/api/v1/config", client.patch("/api/v1/config", json=[1])),
        ("patch", "/api/v1/config", client.patch("/api/v1/config", data=b"")),
        (
            "get",
            "/api/v1/tasks",
            client.get("/api/v1/tasks", headers={"Host": "rebinding.example"}),
        ),
        (
            "post",
            "/api/v1/tasks",
            client.post("/api/v1/tasks", data=b"[" + b" " * (1 << 20) + b"]"),
        ),
    ]
    codes = set()
    for method, path, response in cases:
        assert response.status_code >= 400
        codes.add(assert_conforms(doc, method, path, response)["error"]["code"])

    assert codes == {
        "invalid_json",
        "validation_error",
        "not_found",
        "conflict",
        "forbidden",
        "payload_too_large",
    }


def test_config_plugins_probes_and_reference_responses_conform(doc, client):
    assert_conforms(doc, "get", "/api/v1/config", client.get("/api/v1/config"))
    patched = client.patch("/api/v1/config", json={"selectSize": 7, "retryBackoffMs": 0})
    assert assert_conforms(doc, "patch", "/api/v1/config", patched)["selectSize"] == 7
    assert_conforms(doc, "get", "/api/v1/plugins", client.get("/api/v1/plugins"))
    assert_conforms(doc, "get", "/healthz", client.get("/healthz"))
    assert_conforms(doc, "get", "/readyz", client.get("/readyz"))
    assert_conforms(doc, "get", "/api/v1/openapi.json", client.get("/api/v1/openapi.json"))
    assert "<html" in assert_conforms(doc, "get", "/docs", client.get("/docs"))


def test_responses_without_a_key_and_without_a_database_conform(doc, clean_database, store):
    settings = Settings(database_url=clean_database, api_keys=("k1",), load_entry_points=False)
    keyed = create_app(settings, store=store, plugins=PluginManager(settings)).test_client()
    for method, path, url in [
        ("get", "/api/v1/tasks", "/api/v1/tasks"),
        ("post", "/api/v1/tasks", "/api/v1/tasks"),
        ("get", "/api/v1/config", "/api/v1/config"),
        ("get", "/api/v1/openapi.json", "/api/v1/openapi.json"),
    ]:
        response = keyed.open(url, method=method.upper())
        assert response.status_code == 401
        assert_conforms(doc, method, path, response)


def test_responses_while_the_database_is_unreachable_conform(doc, unreachable_database):
    settings = Settings(database_url=unreachable_database.url, load_entry_points=False)
    client = create_app(
        settings, store=unreachable_database.store, plugins=PluginManager(settings)
    ).test_client()
    for method, path, url in [
        ("get", "/api/v1/tasks/{task_id}", "/api/v1/tasks/8b9f0c7e-1b2a-4a55-9b9d-3c1e2d3f4a5b"),
        ("get", "/api/v1/tasks", "/api/v1/tasks"),
        ("get", "/api/v1/config", "/api/v1/config"),
        ("get", "/readyz", "/readyz"),
    ]:
        response = client.open(url, method=method.upper())
        assert response.status_code == 503
        body = assert_conforms(doc, method, path, response)
        assert unreachable_database.internals not in str(body)


def test_bodies_that_need_a_field_say_so(doc):
    """An empty PATCH or bulk filter is a 400: the document says so, so a generated
    client or a tester does not take `{}` for a valid body."""
    schemas = doc["components"]["schemas"]
    assert schemas["TaskPatch"]["minProperties"] == 1
    assert schemas["BulkFilter"]["minProperties"] == 1
