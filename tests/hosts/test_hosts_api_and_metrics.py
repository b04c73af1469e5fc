"""Throttled hosts as operators see them: `GET /api/v1/hosts` and the scheduler_host_*
series of /metrics (both backends)."""

from __future__ import annotations

from flask.testing import FlaskClient

from scheduler_core.plugins.host_metrics import MAX_HOST_LABELS
from scheduler_core.store.base import Store
from tests.support.database import TestDatabase


def test_no_throttled_host_lists_nothing(client: FlaskClient) -> None:
    assert client.get("/api/v1/hosts").json == {"hosts": []}
    assert b"scheduler_host_blocked_seconds{" not in client.get("/metrics").data


def test_a_throttled_host_is_listed_and_measured(client: FlaskClient, store: Store) -> None:
    store.record_host_feedback({"api.example.com": (2000, 2)}, ())

    [host] = client.get("/api/v1/hosts").json["hosts"]
    assert host["host"] == "api.example.com"
    assert 1.0 < host["blockedSeconds"] <= 2.0
    assert (host["maxConcurrent"], host["maxPerSecond"], host["throttledTotal"]) == (1, 1.0, 2)
    assert host["blockedUntil"].endswith("Z")
    text = client.get("/metrics").data.decode()
    assert 'scheduler_host_throttled_total{host="api.example.com"} 2.0' in text
    assert 'scheduler_host_max_concurrent{host="api.example.com"} 1.0' in text
    assert 'scheduler_host_max_per_second{host="api.example.com"} 1.0' in text
    assert 'scheduler_host_blocked_seconds{host="api.example.com"}' in text


def test_metrics_show_at_most_50_hosts_and_the_rest_as_other(
    client: FlaskClient, store: Store, db: TestDatabase
) -> None:
    store.record_host_feedback({f"h{i:03d}.example": (1000, 1) for i in range(60)}, ())
    text = client.get("/metrics").data.decode()
    lines = [x for x in text.splitlines() if x.startswith("scheduler_host_throttled_total{")]
    assert len(lines) == MAX_HOST_LABELS + 1
    assert 'scheduler_host_throttled_total{host="other"} 10.0' in text
    assert len(client.get("/api/v1/hosts").json["hosts"]) == 60
