"""The soak's checker finds what it is there to find: a soak that cannot fail proves
nothing. Canned database rows and receiver calls, no processes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.soak.soak import ProcessSample, check_memory, check_tasks

T0 = 1_700_000_000.0


class CannedReader:
    """Answers check_tasks's three queries from a list of tasks."""

    def __init__(self, tasks: list[dict[str, Any]]):
        self.tasks = tasks

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        if "scheduler_config" in sql:
            return [(5,)]
        if "scheduler_attempts" in sql:
            return [
                (t["id"], attempt, code, True)
                for t in self.tasks
                for attempt, code in enumerate(t["history"], start=1)
            ]
        return [
            (
                t["id"],
                t["status"],
                len(t["history"]),
                t.get("max_retries"),
                _at(t["finished"]) if t["status"] == "resolved" else None,
                _at(t["finished"]),
                t["history"][-1] if t["history"] else None,
            )
            for t in self.tasks
        ]

    def time(self, value: Any) -> datetime | None:
        return value  # type: ignore[no-any-return]


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def _calls(
    task_id: str, statuses: list[int], start: float = 0.0
) -> list[tuple[float, str, int, int]]:
    return [(T0 + start + n, task_id, n + 1, s) for n, s in enumerate(statuses)]


def good_run() -> tuple[list[dict[str, Any]], list[Any]]:
    tasks = [
        {"id": "a", "status": "resolved", "history": [200], "finished": 1},
        {"id": "b", "status": "resolved", "history": [500, 200], "finished": 3},
        {"id": "c", "status": "stale", "history": [500, 500], "max_retries": 1, "finished": 3},
    ]
    calls = [*_calls("a", [200]), *_calls("b", [500, 200]), *_calls("c", [500, 500])]
    return tasks, calls


def test_a_good_run_passes() -> None:
    tasks, calls = good_run()
    assert check_tasks(CannedReader(tasks), ["a", "b", "c"], calls) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spoil", "finding"),
    [
        (lambda tasks, calls: calls.append((T0 + 0.5, "a", 1, 200)), "delivered twice"),
        (lambda tasks, calls: calls.append((T0 + 9, "a", 2, 200)), "attempts differs"),
        (lambda tasks, calls: calls.pop(0), "attempts differs"),
        (lambda tasks, calls: tasks.pop(0), "lost"),
        (lambda tasks, calls: tasks[2].update(max_retries=None), "stale, but not 6 calls"),
        (lambda tasks, calls: tasks[0].update(status="pending"), "neither resolved nor stale"),
        (lambda tasks, calls: tasks[0].update(finished=-1), "called after its outcome"),
        (lambda tasks, calls: tasks[1].update(history=[500, 500]), "disagrees with the receiver"),
        (
            lambda tasks, calls: calls.__setitem__(1, (T0, "b", 1, 200)),
            "not 500s then one last 200",
        ),
    ],
)
def test_a_spoilt_run_is_reported(spoil: Any, finding: str) -> None:
    tasks, calls = good_run()
    spoil(tasks, calls)
    failures = check_tasks(CannedReader(tasks), ["a", "b", "c"], calls)  # type: ignore[arg-type]
    assert any(finding in failure for failure in failures), failures


def test_memory_that_keeps_growing_fails_and_a_warm_up_does_not() -> None:
    warm_up = ProcessSample("serve", 1, rss_start_kb=50_000, rss_mid_kb=75_000, rss_end_kb=78_000)
    leak = ProcessSample("worker-1", 2, rss_start_kb=50_000, rss_mid_kb=60_000, rss_end_kb=80_000)

    failures = check_memory([warm_up, leak], max_growth_mb=50, max_late_growth_mb=10)

    assert len(failures) == 1
    assert failures[0].startswith("worker-1: RSS grew 19.5 MB over the second half")
