"""Steady HTTP traffic against a running server, every answer timed and kept.

A `Repeater` sends one request after another from a thread of its own; outage tests read
its samples to show what clients saw while the database was away: which status, which
body, how long each request took.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

# A request that takes longer than this is a hang, not an answer.
CLIENT_TIMEOUT = 10.0


@dataclass
class Sample:
    started: float  # time.monotonic() when the request was sent
    latency: float  # seconds until the whole answer was read
    status: int | None  # None: no HTTP answer at all (refused, reset, client timeout)
    body: Any  # parsed JSON, or the text when it is not JSON
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.latency


class Repeater(threading.Thread):
    """Calls `send(session)` every `pace` seconds (or back to back when it is slower)."""

    def __init__(
        self, name: str, send: Callable[[requests.Session], requests.Response], pace: float
    ):
        super().__init__(name=name, daemon=True)
        self._send = send
        self._pace = pace
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def run(self) -> None:
        with requests.Session() as session:
            while not self._stop_event.is_set():
                started = time.monotonic()
                try:
                    response = self._send(session)
                    latency = time.monotonic() - started
                    try:
                        body: Any = response.json()
                    except ValueError:
                        body = response.text
                    sample = Sample(started, latency, response.status_code, body)
                except requests.RequestException as exc:
                    sample = Sample(started, time.monotonic() - started, None, None, repr(exc))
                with self._lock:
                    self._samples.append(sample)
                self._stop_event.wait(max(0.0, self._pace - (time.monotonic() - started)))

    def samples(self, since: float = 0.0) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if s.started >= since]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(CLIENT_TIMEOUT + 5)


class EnqueueLoad(Repeater):
    """POSTs one task at a time (with an idempotency key) and remembers what was accepted."""

    def __init__(self, base_url: str, webhook_url: str, pace: float, fail_every: int = 0):
        self._count = 0
        self._base_url = base_url
        self._webhook_url = webhook_url
        self._fail_every = fail_every
        super().__init__("enqueue-load", self._post, pace)

    def _post(self, session: requests.Session) -> requests.Response:
        self._count += 1
        payload: dict[str, Any] = {"n": self._count}
        if self._fail_every and self._count % self._fail_every == 0:
            payload["fail"] = 1  # the receiver answers 500 to its first attempt
        return session.post(
            f"{self._base_url}/api/v1/tasks",
            json={
                "webhookUrl": self._webhook_url,
                "payload": payload,
                "idempotencyKey": uuid.uuid4().hex,
            },
            timeout=CLIENT_TIMEOUT,
        )

    def accepted(self, since: float = 0.0) -> set[str]:
        return {
            s.body["id"]
            for s in self.samples(since)
            if s.status == 201 and isinstance(s.body, dict)
        }


def getter(base_url: str, path: str) -> Callable[[requests.Session], requests.Response]:
    def send(session: requests.Session) -> requests.Response:
        return session.get(base_url + path, timeout=CLIENT_TIMEOUT)

    return send


def is_unavailable_error(sample: Sample) -> bool:
    """A 503 with the JSON error shape of the spec."""
    body = sample.body
    if sample.status != 503 or not isinstance(body, dict) or set(body) != {"error"}:
        return False
    error = body["error"]
    return (
        isinstance(error, dict)
        and error.get("code") == "unavailable"
        and isinstance(error.get("message"), str)
        and bool(error["message"])
        and isinstance(error.get("details"), dict)
    )
