"""Helpers of the queue tests."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

# Fixtures of other areas the queue tests use: the API served by waitress (client, CLI),
# a signed-in dashboard and a headless Chromium.
from tests.client.conftest import api, base_url  # noqa: F401
from tests.ui.conftest import chromium, dashboard, keyed_app, keyed_settings  # noqa: F401

QUEUES = "/api/v1/queues"


def put_queue(client: FlaskClient, name: str, expect: int = 201, **config: Any) -> dict[str, Any]:
    response = client.put(f"{QUEUES}/{name}", json=config)
    assert response.status_code == expect, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def get_queue(client: FlaskClient, name: str) -> dict[str, Any]:
    response = client.get(f"{QUEUES}/{name}")
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body
