"""example://BOX callbacks as JSON lines, through a whole scheduler (scheduler_core.testing)."""

from __future__ import annotations

import json
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import scheduler_core_example
from scheduler_core.models import Callback
from scheduler_core.testing import Receiver, RequestFailed, Scheduler


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_callback_becomes_a_json_line_in_its_box(scheduler: Scheduler, boxes: Path) -> None:
    task = scheduler.enqueue("example://orders", payload={"order": 7}, webhookAuth="Bearer s3")

    scheduler.deliver_due()

    [line] = lines(boxes / "orders.jsonl")
    assert line["url"] == "example://orders"
    assert line["body"]["taskId"] == task["id"]
    assert line["body"]["payload"] == {"order": 7}
    assert line["headers"]["X-Scheduler-Task-Id"] == task["id"]
    assert line["headers"]["Authorization"] == "Bearer s3"  # webhookAuth, as HTTP sends it
    assert scheduler.task(task["id"])["status"] == "resolved"


def test_each_box_is_its_own_file_in_delivery_order(scheduler: Scheduler, boxes: Path) -> None:
    first = scheduler.enqueue("example://orders", payload=1)
    second = scheduler.enqueue("example://orders/the-path-is-ignored?and=query", payload=2)
    other = scheduler.enqueue("example://invoices", payload=3)

    scheduler.deliver_due()

    assert sorted(p.name for p in boxes.iterdir()) == ["invoices.jsonl", "orders.jsonl"]
    orders = lines(boxes / "orders.jsonl")
    assert sorted(line["body"]["taskId"] for line in orders) == sorted([first["id"], second["id"]])
    assert [line["body"]["payload"] for line in lines(boxes / "invoices.jsonl")] == [3]
    assert other["id"] != first["id"]


def test_without_a_folder_the_attempt_fails_and_is_retried_later(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCHEDULER_EXAMPLE_DIR", raising=False)
    task = scheduler.enqueue("example://orders")

    scheduler.deliver_due()

    shown = scheduler.task(task["id"])
    assert (shown["status"], shown["attempts"]) == ("pending", 1)
    assert shown["lastError"] == "SCHEDULER_EXAMPLE_DIR is not set"


def test_a_box_that_cannot_be_written_fails_until_the_budget_is_spent(
    scheduler: Scheduler, boxes: Path
) -> None:
    (boxes / "orders.jsonl").mkdir()  # a folder where the file should be
    scheduler.configure(max_retries=1, retry_backoff_ms=0)
    task = scheduler.enqueue("example://orders")

    scheduler.deliver_due()

    shown = scheduler.task(task["id"])
    assert (shown["status"], shown["attempts"]) == ("stale", 2)
    assert shown["lastError"] == "cannot write the box: Is a directory"


def test_http_urls_still_go_to_the_builtin_http_plugin(
    scheduler: Scheduler, receiver: Receiver, boxes: Path
) -> None:
    task = scheduler.enqueue(receiver.url("/hook"))

    scheduler.deliver_due()

    [call] = receiver.calls("/hook")
    assert call.json()["taskId"] == task["id"]
    assert list(boxes.iterdir()) == []


def test_the_scheme_is_listed_and_others_are_still_refused(scheduler: Scheduler) -> None:
    [mine] = [row for row in scheduler.loaded_plugins() if not row["builtin"]]
    assert (mine["schemes"], mine["hooks"]) == (
        ["example"],
        ["scheduler_deliver", "scheduler_delivery_schemes"],
    )

    with pytest.raises(RequestFailed) as refused:
        scheduler.enqueue("sample://orders")
    assert refused.value.details["webhookUrl"] == [
        "Scheme 'sample' is not handled by any loaded delivery plugin "
        "(handled: example, http, https)."
    ]


def test_the_distribution_declares_its_entry_point() -> None:
    [entry_point] = [ep for ep in entry_points(group="scheduler_core") if ep.name == "example"]

    assert entry_point.load() is scheduler_core_example
    assert entry_point.dist is not None and entry_point.dist.name == "scheduler-core-example"


# -- the hook itself, called as the core calls it -------------------------------------------


def callback(url: str) -> Callback:
    return Callback(url=url, headers={"Content-Type": "application/json"}, body=b'{"taskId":"t"}')


def test_a_deadline_already_past_writes_nothing(boxes: Path) -> None:
    report = scheduler_core_example.scheduler_deliver(
        callback=callback("example://orders"), deadline=time.monotonic() - 1
    )

    assert report is not None and report.timed_out
    assert list(boxes.iterdir()) == []


@pytest.mark.parametrize("url", ["example://Bad_Box", "example://" + "b" * 64])
def test_a_box_name_outside_a_z_0_9_and_dash_is_a_failed_attempt(boxes: Path, url: str) -> None:
    report = scheduler_core_example.scheduler_deliver(
        callback=callback(url), deadline=time.monotonic() + 5
    )

    assert report is not None
    assert report.error == "the box must be 1 to 63 of a-z, 0-9 and -"
    assert list(boxes.iterdir()) == []
