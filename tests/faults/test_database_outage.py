"""Database outage: PostgreSQL stopped under load, every connection killed under load, and
an outcome that comes back while the database is away.

These run on a private PostgreSQL cluster (tests/faults/pgcluster.py) that the tests may
stop and crash, never on the PostgreSQL the other suites share. A `scheduler serve` (API
and dispatcher) and a `scheduler worker` deliver to a counting receiver while a client
enqueues a task every 50 ms and probes /readyz and /healthz.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.cli.conftest import Processes, api, db_tasks, enqueue, set_db_config
from tests.faults.conftest import OutageDatabase
from tests.faults.load import EnqueueLoad, Repeater, Sample, getter, is_unavailable_error
from tests.faults.receiver import CountingReceiver
from tests.store.databases import query
from tests.support.processes import SchedulerProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

QUICK = 2.0  # seconds: a 503 slower than this is a hang, not a quick refusal
SLOW = 5.0  # seconds: any other answer slower than this (on a busy machine) is a hang
SETTLE_TIMEOUT = 90.0
TROUBLE = ("Traceback", "tick failed", "unhandled error")


@dataclass
class Traffic:
    load: EnqueueLoad
    readyz: Repeater
    healthz: Repeater

    def all(self) -> list[Repeater]:
        return [self.load, self.readyz, self.healthz]


@contextmanager
def traffic(server: SchedulerProcess, receiver: CountingReceiver) -> Iterator[Traffic]:
    """Enqueue a task every 50 ms (every 5th fails its first attempt); probe /readyz and
    /healthz every 100 ms."""
    assert server.base_url is not None
    flows = Traffic(
        EnqueueLoad(server.base_url, receiver.url("/outage"), pace=0.05, fail_every=5),
        Repeater("readyz", getter(server.base_url, "/readyz"), pace=0.1),
        Repeater("healthz", getter(server.base_url, "/healthz"), pace=0.1),
    )
    for flow in flows.all():
        flow.start()
    try:
        yield flows
    finally:
        for flow in flows.all():
            flow.stop()


def server_and_worker(processes: Processes, url: str) -> tuple[SchedulerProcess, SchedulerProcess]:
    # Lease 6 s; failed attempts retried after 200 ms; a busy tick claims at most 20.
    set_db_config(
        url,
        base_interval_ms=50,
        http_callback_timeout_ms=1000,
        select_size=20,
        retry_backoff_ms=200,
        max_retries=20,
    )
    server = processes.serve(url)
    worker = processes.worker(url)
    return server, worker


def unavailable(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.status == 503]


def assert_answers(samples: list[Sample], allowed: set[int], what: str) -> None:
    """Every request got an HTTP answer of an allowed status in time; each 503 is the JSON
    error of the spec and came quickly."""
    assert samples, f"no {what} requests were made"
    no_answer = [s for s in samples if s.status is None]
    assert no_answer == [], f"{what}: requests without an HTTP answer: {no_answer[:3]}"
    unexpected = [s for s in samples if s.status not in allowed]
    assert unexpected == [], f"{what}: unexpected answers: {unexpected[:3]}"
    slow_503 = [s for s in unavailable(samples) if s.latency >= QUICK]
    assert slow_503 == [], f"{what}: 503s slower than {QUICK}s: {slow_503[:3]}"
    slow = [s for s in samples if s.latency >= SLOW]
    assert slow == [], f"{what}: answers slower than {SLOW}s: {slow[:3]}"
    malformed = [s for s in unavailable(samples) if not is_unavailable_error(s)]
    assert malformed == [], f"{what}: 503 without the JSON error shape: {malformed[:3]}"


def latency_summary(samples: list[Sample]) -> str:
    if not samples:
        return "none"
    latencies = sorted(s.latency * 1000 for s in samples)
    median = latencies[len(latencies) // 2]
    return f"{len(latencies)} x 503, median {median:.0f} ms, max {latencies[-1]:.0f} ms"


def resolved_after(process: SchedulerProcess, mark: int) -> bool:
    return " resolved status=200" in process.output[mark:]


def assert_nothing_lost(url: str, accepted: set[str], receiver: CountingReceiver) -> None:
    """Every accepted task resolved, each resolution backed by a 2xx the receiver sent."""
    wait_until(
        lambda: all(t["status"] == "resolved" for t in db_tasks(url).values()),
        timeout=SETTLE_TIMEOUT,
        interval=0.2,
        message="for every stored task to be resolved",
    )
    tasks = db_tasks(url)
    assert accepted <= set(tasks), f"accepted tasks lost: {sorted(accepted - set(tasks))[:5]}"
    # A request cut short by the outage may have committed all the same: the client saw
    # a 503 but the task exists. It must be resolved like any other.
    assert {t["status"] for t in tasks.values()} == {"resolved"}
    assert set(tasks) <= receiver.seen(), "a resolved task the receiver never saw"
    successes = query(
        url,
        "SELECT CAST(task_id AS TEXT), attempt FROM scheduler_attempts"
        " WHERE status_code BETWEEN 200 AND 299",
    )
    without_2xx = set(successes) - receiver.answered_2xx()
    assert without_2xx == set(), f"recorded as 2xx but not answered 2xx: {sorted(without_2xx)}"
    resolved_by = {task_id for task_id, _ in successes}
    assert resolved_by == set(tasks), "a task resolved without a recorded 2xx attempt"
    assert len(successes) == len(tasks), "a task resolved twice"
    unfinished = query(url, "SELECT count(*) FROM scheduler_attempts WHERE finished_at IS NULL")
    assert unfinished == [(0,)]


def assert_no_trouble(*processes: SchedulerProcess) -> None:
    for process in processes:
        assert process.proc.poll() is None, f"a process died:\n{process.output}"
        for trouble in TROUBLE:
            assert trouble not in process.output, process.output


# -- a. PostgreSQL stopped ----------------------------------------------------------


def test_postgresql_stopped_under_load_503s_quickly_and_everything_resumes(
    outage_database: OutageDatabase, processes: Processes, counting_receiver: CountingReceiver
) -> None:
    cluster = outage_database.cluster
    server, worker = server_and_worker(processes, outage_database.url)
    with traffic(server, counting_receiver) as flows:
        wait_until(
            lambda: counting_receiver.count >= 20 and len(flows.load.accepted()) >= 20,
            timeout=30,
            message="for tasks to flow",
        )
        cluster.stop("immediate")  # like a crash: no checkpoint, connections cut
        down = time.monotonic()
        # Down for a few seconds, long enough for several refused requests of each kind.
        wait_until(
            lambda: (
                time.monotonic() - down >= 3.0
                and len(unavailable(flows.load.samples(down))) >= 5
                and len(unavailable(flows.readyz.samples(down))) >= 5
            ),
            timeout=30,
            message="for the API to answer 503 while PostgreSQL is down",
        )
        restarting = time.monotonic()
        assert cluster.running() is False
        cluster.start()
        up = time.monotonic()
        marks = len(server.output), len(worker.output)
        # Both dispatchers and the API come back by themselves.
        wait_until(
            lambda: (
                len(flows.load.accepted(up)) >= 10
                and any(s.status == 200 for s in flows.readyz.samples(up))
                and resolved_after(server, marks[0])
                and resolved_after(worker, marks[1])
            ),
            timeout=60,
            interval=0.1,
            message="for the API and both dispatchers to resume",
        )
        resumed = time.monotonic()

    posts = flows.load.samples()
    readyz = flows.readyz.samples()
    during = [s for s in posts if s.started >= down and s.ended <= restarting]
    ready_during = [s for s in readyz if s.started >= down and s.ended <= restarting]
    print(
        f"PostgreSQL down {restarting - down:.1f}s, API and dispatchers back"
        f" {resumed - up:.1f}s after the restart; POST /api/v1/tasks during the outage:"
        f" {latency_summary(unavailable(during))}; GET /readyz:"
        f" {latency_summary(unavailable(ready_during))}; all POST 503s:"
        f" {latency_summary(unavailable(posts))}"
    )
    assert_answers(posts, {201, 503}, "POST /api/v1/tasks")
    assert_answers(readyz, {200, 503}, "GET /readyz")
    assert_answers(flows.healthz.samples(), {200}, "GET /healthz")
    assert [s.status for s in during] == [503] * len(during) and len(during) >= 5
    assert [s.status for s in ready_during] == [503] * len(ready_during)
    assert_no_trouble(server, worker)
    for process in (server, worker):  # each dispatcher noticed, logged, and waited
        assert re.search(
            r"database unavailable \(.*trying again in|recording outcomes failed .*retrying in",
            process.output,
        ), process.output
    assert_nothing_lost(outage_database.url, flows.load.accepted(), counting_receiver)


# -- b. every connection killed -----------------------------------------------------


def test_every_connection_killed_again_and_again_under_load_loses_nothing(
    outage_database: OutageDatabase, processes: Processes, counting_receiver: CountingReceiver
) -> None:
    cluster = outage_database.cluster
    server, worker = server_and_worker(processes, outage_database.url)
    killed: list[int] = []
    with traffic(server, counting_receiver) as flows:
        for _ in range(5):
            calls, accepted = counting_receiver.count, len(flows.load.accepted())

            def flowed(calls: int = calls, accepted: int = accepted) -> bool:
                return (
                    counting_receiver.count >= calls + 10
                    and len(flows.load.accepted()) >= accepted + 5
                )

            wait_until(flowed, timeout=30, message="for tasks to flow again")
            killed.append(cluster.terminate_connections(outage_database.name))
        last_kill = time.monotonic()
        marks = len(server.output), len(worker.output)
        wait_until(
            lambda: (
                len(flows.load.accepted(last_kill)) >= 10
                and any(s.status == 200 for s in flows.readyz.samples(last_kill))
                and resolved_after(server, marks[0])
                and resolved_after(worker, marks[1])
            ),
            timeout=60,
            interval=0.1,
            message="for the API and both dispatchers to carry on after the last kill",
        )

    posts = flows.load.samples()
    print(
        f"connections killed per round: {killed}; POST /api/v1/tasks:"
        f" {sum(s.status == 201 for s in posts)} x 201, {latency_summary(unavailable(posts))};"
        f" GET /readyz: {latency_summary(unavailable(flows.readyz.samples()))}"
    )
    assert all(n >= 1 for n in killed), killed
    assert_answers(posts, {201, 503}, "POST /api/v1/tasks")
    assert_answers(flows.readyz.samples(), {200, 503}, "GET /readyz")
    assert_answers(flows.healthz.samples(), {200}, "GET /healthz")
    assert_no_trouble(server, worker)
    assert_nothing_lost(outage_database.url, flows.load.accepted(), counting_receiver)


# -- c. an outcome that arrives during the outage -------------------------------------


def _one_callback_in_flight(
    processes: Processes,
    database: OutageDatabase,
    receiver: CountingReceiver,
    timeout_ms: int,
    answer_after: float,
) -> tuple[SchedulerProcess, str, float]:
    """A server whose one task's callback has reached the receiver; returns the server,
    the task id and when the call arrived (the lease began just before)."""
    set_db_config(database.url, base_interval_ms=50, http_callback_timeout_ms=timeout_ms)
    server = processes.serve(database.url)
    [task] = enqueue(
        server, {"webhookUrl": receiver.url("/slow"), "payload": {"delay": answer_after}}
    )
    wait_until(lambda: receiver.count == 1, timeout=30, message="for the callback")
    return server, task["id"], receiver.calls()[0].arrived


def test_an_outcome_that_arrives_during_a_short_outage_is_written_when_it_ends(
    outage_database: OutageDatabase, processes: Processes, counting_receiver: CountingReceiver
) -> None:
    # Lease 10 s. The receiver answers 2 s into the call; PostgreSQL is down from the
    # start of the call until the dispatcher has failed to write the outcome and 2 s more.
    server, task_id, arrived = _one_callback_in_flight(
        processes, outage_database, counting_receiver, timeout_ms=5000, answer_after=2.0
    )
    outage_database.cluster.stop("immediate")
    server.wait_for_log(r"recording outcomes failed", timeout=15)
    down_since = time.monotonic()
    wait_until(lambda: time.monotonic() - down_since >= 2.0, timeout=5)  # the outage goes on
    outage_database.cluster.start()
    back = time.monotonic()
    assert back - arrived < 10 - 2, "the test meant to end the outage well within the lease"

    wait_until(
        lambda: db_tasks(outage_database.url)[task_id]["status"] == "resolved",
        timeout=30,
        message="for the outcome to be written",
    )
    [call] = counting_receiver.calls()
    assert (call.attempt, call.status) == (1, 200) and call.answered is not None
    task = api(server, "GET", f"/api/v1/tasks/{task_id}").json()
    assert (task["attempts"], task["lastStatusCode"]) == (1, 200)
    history = api(server, "GET", f"/api/v1/tasks/{task_id}/attempts").json()["attempts"]
    assert [(a["attempt"], a["statusCode"], a["error"]) for a in history] == [(1, 200, None)]
    assert "lease expired" not in server.output
    assert "delivered again" not in server.output
    print(f"outcome written {time.monotonic() - back:.1f}s after PostgreSQL came back")
    assert_no_trouble(server)


def test_an_outcome_that_outlives_its_lease_in_an_outage_is_delivered_again(
    outage_database: OutageDatabase, processes: Processes, counting_receiver: CountingReceiver
) -> None:
    # Lease 6 s. The receiver answers after 0.5 s, but PostgreSQL stays down until the
    # dispatcher has given up writing the outcome because the lease ran out.
    server, task_id, arrived = _one_callback_in_flight(
        processes, outage_database, counting_receiver, timeout_ms=1000, answer_after=0.5
    )
    outage_database.cluster.stop("immediate")
    server.wait_for_log(r"could not record 1 outcomes before their leases ran out", timeout=20)
    # The outage outlasts the lease (which began just before the call arrived).
    wait_until(lambda: time.monotonic() - arrived >= 6.5, timeout=10)
    outage_database.cluster.start()

    wait_until(
        lambda: db_tasks(outage_database.url)[task_id]["status"] == "resolved",
        timeout=45,
        message="for the task to be delivered again and resolved",
    )
    calls = counting_receiver.calls()
    assert [(c.task_id, c.attempt, c.status) for c in calls] == [
        (task_id, 1, 200),
        (task_id, 2, 200),
    ]
    assert calls[1].arrived - arrived >= 5.0, "delivered again before the lease ran out"
    task = api(server, "GET", f"/api/v1/tasks/{task_id}").json()
    assert (task["attempts"], task["lastStatusCode"]) == (2, 200)
    history = api(server, "GET", f"/api/v1/tasks/{task_id}/attempts").json()["attempts"]
    assert [(a["attempt"], a["statusCode"]) for a in history] == [(1, None), (2, 200)]
    assert "lease expired" in history[0]["error"]
    assert f"task={task_id} lease expired" in server.output
    assert_no_trouble(server)
