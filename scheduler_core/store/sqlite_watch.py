"""Notices across processes on one SQLite file: `PRAGMA data_version`, polled.

The value changes whenever another connection commits to the file, and reading it costs a
look at the WAL index in shared memory, no disk read: cheap enough to ask every few
milliseconds. A change says only "something changed"; the dispatcher looks again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.005


class DataVersionWatcher:
    def __init__(
        self, path: str, on_notice: Callable[[str], None], interval_s: float = POLL_INTERVAL_S
    ):
        self._path = path
        self._on_notice = on_notice
        self._interval_s = interval_s
        self._closed = threading.Event()
        # The first value is read before the watch is returned: a commit that comes after
        # it (an enqueue right after the dispatcher's first look) is a change, never the
        # starting point.
        self._conn, self._last = self._open_and_read()
        self._thread = threading.Thread(target=self._run, name="sqlite-watch", daemon=True)
        self._thread.start()

    def _open_and_read(self) -> tuple[sqlite3.Connection | None, int | None]:
        try:
            conn = sqlite3.connect(self._path, check_same_thread=False)
            return conn, conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            log.debug("data_version check failed: %s", exc)
            return None, None

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)

    def _run(self) -> None:
        conn, last = self._conn, self._last
        while not self._closed.wait(self._interval_s):
            try:
                if conn is None:
                    conn = sqlite3.connect(self._path, check_same_thread=False)
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                log.debug("data_version check failed: %s", exc)
                if conn is not None:
                    conn.close()
                conn, last = None, None
                continue
            if last is not None and version != last:
                self._on_notice("unknown")
            last = version
        if conn is not None:
            conn.close()
