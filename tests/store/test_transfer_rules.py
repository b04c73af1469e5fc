"""`scheduler export` / `import` carry the delivery rules and the trace context: a task's
notAfter, successCodes, staleCodes and traceparent, and a schedule's template rules, go
through the export file's lines and come out the same in another database. Both backends."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from scheduler_core.models import NewTask, TaskStatus
from scheduler_core.schedules import NewSchedule
from scheduler_core.store import Store, open_store
from scheduler_core.transfer import header_line, read_header, read_tasks, task_line, trailer_line

DEADLINE = datetime(2031, 1, 1, 12, 30, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def target(empty_database_url: str) -> Iterator[Store]:
    store = open_store(empty_database_url, pool_size=2)
    store.migrate()
    yield store
    store.close()


def test_rules_and_trace_context_survive_export_and_import(store: Store, target: Store) -> None:
    [(ruled, _), (plain, _)] = store.enqueue(
        [
            NewTask(
                webhook_url="http://127.0.0.1:9/ruled",
                execute_at=datetime(2031, 1, 1, tzinfo=UTC),
                not_after=DEADLINE,
                success_codes=(200, "2xx", 409),
                stale_codes=(),
                traceparent=TRACEPARENT,
            ),
            NewTask(webhook_url="http://127.0.0.1:9/plain", stale_codes=(410,)),
        ]
    )
    store.create_schedule(
        NewSchedule(
            name="nightly",
            cron="0 3 * * *",
            webhook_url="http://127.0.0.1:9/nightly",
            not_after=DEADLINE,
            success_codes=(202,),
            stale_codes=("4xx",),
        )
    )

    # Through the file's own lines, as `scheduler export` writes and `import` reads them.
    tasks = list(store.export_tasks(frozenset(TaskStatus)))
    schedules = store.export_schedules()
    text = (
        header_line(store.dialect, frozenset(TaskStatus), [], [(s, None) for s in schedules])
        + "".join(task_line(t, None) for t in tasks)
        + trailer_line(len(tasks))
    )
    lines = io.StringIO(text)
    header = read_header(lines.readline())
    read_back = [t for _, t in read_tasks(lines)]
    assert read_back == tasks

    assert target.import_schedules(header.schedules) == ["nightly"]
    assert target.import_tasks(read_back).created == [ruled.id, plain.id]

    moved = target.get(ruled.id)
    assert moved is not None
    assert moved.not_after == DEADLINE
    assert moved.success_codes == (200, "2xx", 409)
    assert moved.stale_codes == ()
    assert moved.traceparent == TRACEPARENT
    other = target.get(plain.id)
    assert other is not None
    assert (other.not_after, other.success_codes, other.stale_codes, other.traceparent) == (
        None,
        None,
        (410,),
        None,
    )
    schedule = target.get_schedule("nightly")
    assert schedule is not None
    assert (schedule.not_after, schedule.success_codes, schedule.stale_codes) == (
        DEADLINE,
        (202,),
        ("4xx",),
    )
    # The target claims them with their rules (and the key of per-host backpressure).
    claimed = {c.id: c for c in target.claim_due(10, lease_ms=60_000)}
    assert claimed[plain.id].stale_codes == (410,)
    assert claimed[plain.id].target_host == "127.0.0.1:9"


def test_a_file_of_an_earlier_version_reads_without_rules(store: Store) -> None:
    [(task, _)] = store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/old")])
    [exported] = store.export_tasks(frozenset(TaskStatus))
    line = task_line(exported, None)
    for name in ('"notAfter": null, ', '"successCodes": null, ', '"staleCodes": null, '):
        assert name in line
        line = line.replace(name, "")
    line = line.replace('"traceparent": null, ', "")
    [(_, read)] = read_tasks(io.StringIO(line + trailer_line(1)))
    assert (read.not_after, read.success_codes, read.stale_codes, read.traceparent) == (
        None,
        None,
        None,
        None,
    )
    assert read.id == task.id
