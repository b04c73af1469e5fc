"""Closed-loop HTTP load: T threads, each with its own keep-alive `requests.Session`,
POSTing one body as fast as answers come back, for a duration or a number of requests."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import requests

from benchmarks.stats import percentile

REQUEST_TIMEOUT_S = 30.0
WARMUP_REQUESTS = 2  # per thread, before the clock starts: connections open, code paths warm


class Window(Protocol):
    def opening(self) -> None:
        """Called just before the clock starts (the threads are warm and waiting)."""

    def closed(self) -> None:
        """Called just after the clock stopped."""


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency(self, p: float) -> float | None:
        ordered = sorted(self.latencies_ms)
        return percentile(ordered, p) if ordered else None


def post_load(
    url: str,
    body: bytes,
    threads: int,
    expect: int,
    seconds: float | None = None,
    requests_total: int | None = None,
    window: Window | None = None,
    warmup: int = WARMUP_REQUESTS,
) -> LoadResult:
    """POST `body` (JSON) to `url` from `threads` threads until `seconds` have passed or
    `requests_total` requests were sent in all. A request counts as ok when it answers
    `expect`; the clock starts when every thread has warmed up. `window` is told when
    the clock starts and stops (to read CPU counters over the same span). `warmup`
    requests per thread go before the clock starts, and are not counted."""
    if (seconds is None) == (requests_total is None):
        raise ValueError("give seconds or requests_total")
    result = LoadResult()
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    stop = threading.Event()
    tickets = itertools.count() if requests_total is not None else None
    headers = {"Content-Type": "application/json"}

    def client() -> None:
        latencies: list[float] = []
        ok = errors = 0
        first_error: str | None = None
        with requests.Session() as session:

            def post() -> str | None:
                try:
                    answer = session.post(
                        url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_S
                    )
                except requests.RequestException as exc:
                    return f"{type(exc).__name__}: {exc}"
                if answer.status_code != expect:
                    return f"HTTP {answer.status_code}: {answer.text[:200]}"
                return None

            for _ in range(warmup):
                post()
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                return
            while not stop.is_set():
                if tickets is not None and next(tickets) >= (requests_total or 0):
                    break
                started = time.perf_counter()
                error = post()
                if error is None:
                    latencies.append((time.perf_counter() - started) * 1000)
                    ok += 1
                else:
                    errors += 1
                    first_error = first_error or error
        with lock:
            result.ok += ok
            result.errors += errors
            result.first_error = result.first_error or first_error
            result.latencies_ms.extend(latencies)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        if window is not None:
            window.opening()
        ready.wait(timeout=60)
        started = time.perf_counter()
        if seconds is not None:
            time.sleep(seconds)
            stop.set()
        for worker in workers:
            worker.join()
        result.elapsed_s = time.perf_counter() - started
        if window is not None:
            window.closed()
    finally:
        stop.set()
        ready.abort()
    return result
