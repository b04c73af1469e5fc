"""Unbounded answers, seen from a real `scheduler serve`: whatever the status, at most
64 KiB of an answer's body is read, raw, never decompressed; so a 302 whose gzip body
inflates to 400 MB, or a plain 400 MB one, is a failed attempt saying "HTTP 302", decided
at once, and the server's memory does not grow by more than a few megabytes.

(requests' Session reads a redirect's whole body, decompressed, to free its connection;
the HTTP plugin uses the adapter directly.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Processes, api, enqueue, processes, set_db_config  # noqa: F401
from tests.plugins.rawservers import CompressedBomb, Huge
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

BIG = 400 * 1024 * 1024
RSS_GROWTH_LIMIT = 20 * 1024 * 1024


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    ("kind", "status"),
    [("gzip bomb", 302), ("plain", 302), ("gzip bomb", 500), ("plain", 200)],
)
def test_a_huge_answer_is_judged_by_its_status_and_costs_no_memory(
    processes: Processes,  # noqa: F811
    clean_database: str,
    receiver: Receiver,
    hostile,
    kind: str,
    status: int,
) -> None:
    server = hostile(CompressedBomb(status, BIG) if kind == "gzip bomb" else Huge(status, BIG))
    set_db_config(clean_database, http_callback_timeout_ms=5000, max_retries=0)
    scheduler = processes.serve(clean_database)
    pid = scheduler.proc.pid
    # Warm up: one ordinary callback, so imports, pools and threads exist before measuring.
    [warm] = enqueue(scheduler, {"webhookUrl": receiver.url("/warm")})
    receiver.wait_for(1, "/warm")
    wait_until(lambda: _task(scheduler, warm["id"])["status"] == "resolved")
    before = _rss_bytes(pid)

    [created] = enqueue(scheduler, {"webhookUrl": server.url("/big")})
    wait_until(lambda: _task(scheduler, created["id"])["status"] in {"stale", "resolved"})
    after = _task(scheduler, created["id"])
    grown = _rss_bytes(pid) - before

    assert after["lastStatusCode"] == status
    if status == 200:
        assert (after["status"], after["lastError"]) == ("resolved", None)
    else:
        assert after["status"] == "stale"
        assert after["lastError"].startswith(f"HTTP {status}")
    if status == 302:
        assert after["lastError"].startswith("HTTP 302 (redirects are not followed)")
    [record] = api(scheduler, "GET", f"/api/v1/tasks/{created['id']}/attempts").json()["attempts"]
    assert record["durationMs"] < 3000  # decided on the first 64 KiB, not on 400 MB
    assert grown < RSS_GROWTH_LIMIT, f"RSS grew by {grown / 2**20:.1f} MiB"


def _task(scheduler, task_id: str) -> dict:
    response = api(scheduler, "GET", f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200
    body: dict = response.json()
    return body
