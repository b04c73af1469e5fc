"""The dashboard's Hosts page (both backends): throttled hosts with their limits and
block, escaped; an empty state when none is."""

from __future__ import annotations

from scheduler_core.store import Store
from tests.ui.conftest import Dashboard


def test_the_hosts_page_says_when_no_host_is_throttled(dashboard: Dashboard) -> None:
    response = dashboard.get("/ui/hosts")
    assert response.status_code == 200
    assert "No host is throttled" in response.text
    assert 'href="/ui/hosts"' in dashboard.get("/ui/").text  # in the navigation


def test_the_hosts_page_lists_a_throttled_host(dashboard: Dashboard, store: Store) -> None:
    store.record_host_feedback({"api.example.com:8443": (30_000, 3)}, ())
    html = dashboard.get("/ui/hosts").text
    assert 'data-host="api.example.com:8443"' in html
    row = html[html.index('data-host="api.example.com:8443"') :]
    assert 'data-stat="throttled">3<' in row
    assert 'data-stat="concurrency">1<' in row
    assert 'data-stat="rate">1.0/s<' in row
    blocked = row[row.index('data-stat="blocked">') + len('data-stat="blocked">') :]
    assert 25.0 < float(blocked.split(" s<")[0]) <= 30.0
