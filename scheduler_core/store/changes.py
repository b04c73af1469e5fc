"""Change notices: how a dispatcher learns, within milliseconds, that a task may have
fallen due or the configuration changed, instead of waiting for its next poll.

Within a process the store itself tells its subscribers after each commit that matters
(an enqueue due soon, a retry, a config change, a failed attempt retried soon). Across
processes each backend adds its own source: PostgreSQL's LISTEN/NOTIFY
(`pg_listener.py`), SQLite's `PRAGMA data_version` (`sqlite_watch.py`).

A notice carries no data a dispatcher must trust: it only says "look again". Kinds:
``due``, ``config``, and ``unknown`` (something changed, or notices may have been missed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

# A task due within this many seconds wakes dispatchers at once. Later ones are found by
# the dispatchers' own reading of the earliest due time, at least every second.
WAKE_WINDOW_S = 5

Listener = Callable[[str], None]


class Watch(Protocol):
    def close(self) -> None: ...


class ChangeFeed:
    """The in-process side: subscribers called synchronously after a commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, kind: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind)
            except Exception:  # a listener's bug must not fail the API call that committed
                log.exception("change listener failed")


class CombinedWatch:
    """Closes an in-process subscription and a cross-process watcher together."""

    def __init__(self, unsubscribe: Callable[[], None], watcher: Watch | None):
        self._unsubscribe = unsubscribe
        self._watcher = watcher

    def close(self) -> None:
        self._unsubscribe()
        if self._watcher is not None:
            self._watcher.close()
