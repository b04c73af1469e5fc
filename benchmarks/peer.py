"""The dispatch benchmark's peer: procrastinate (a PostgreSQL job queue for Python) doing
the same work per job, a POST of a small JSON body to the receiver.

Optional: `pip install -e '.[bench]'` installs procrastinate (>= 3). Without it the
dispatch benchmark skips the peer's row and says so.

`python -m benchmarks.peer --database-url URL --concurrency N` runs one procrastinate
worker: it prints `READY` once its app is open, then runs jobs until SIGTERM. procrastinate
3's worker is an asyncio loop; a sync task runs in a thread of the loop's default executor,
which has min(32, cpus + 4) threads (6 on two cores) whatever `concurrency` says, so the
worker here gives that loop an executor of `concurrency` threads: N jobs can then really
post at once, as `scheduler worker`'s 64 delivery threads do.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import procrastinate
import requests

TASK_NAME = "post_callback"
CALLBACK_TIMEOUT_S = 5.0
DEFER_BATCH = 500

_local = threading.local()


def post_callback(url: str, body: dict[str, Any]) -> None:
    """The job: POST the body as JSON, on this thread's keep-alive session (as the
    scheduler's delivery threads reuse their connections); a non-2xx fails the job."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    answer = session.post(url, json=body, timeout=CALLBACK_TIMEOUT_S)
    answer.raise_for_status()


def make_app(database_url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
    app.task(name=TASK_NAME)(post_callback)
    return app


def prepare(database_url: str, jobs: list[dict[str, Any]]) -> None:
    """Create procrastinate's schema in the (empty) database and defer `jobs` (task
    keyword arguments), DEFER_BATCH per `batch_defer_async` call."""

    async def run() -> None:
        app = make_app(database_url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            task = app.tasks[TASK_NAME]
            for start in range(0, len(jobs), DEFER_BATCH):
                await task.batch_defer_async(*jobs[start : start + DEFER_BATCH])

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=args.concurrency))
        app = make_app(args.database_url)
        async with app.open_async():
            print("READY", flush=True)
            await app.run_worker_async(concurrency=args.concurrency, wait=True)

    asyncio.run(run())


if __name__ == "__main__":
    # Run as `python -m benchmarks.peer`, this file is `__main__`: build the app from the
    # module imported under its own name, where procrastinate does not warn about it.
    from benchmarks.peer import main as peer_main

    peer_main()
