"""LISTEN on a dedicated PostgreSQL connection, for notices from every process.

The statements that make a task due soon (enqueue, retry, a failed attempt retried soon)
and config changes send `NOTIFY scheduler_core` (see sql/postgresql.sql). This thread waits
on the connection's socket and passes each payload on. When the connection drops it
reconnects with backoff and reports ``unknown``: notices sent meanwhile are lost, so the
dispatcher looks again.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from scheduler_core.store.pool import first_line

log = logging.getLogger(__name__)

CHANNEL = "scheduler_core"
MAX_RECONNECT_BACKOFF_S = 5.0


class NotifyListener:
    def __init__(self, dsn: str, connect_kwargs: dict[str, Any], on_notice: Callable[[str], None]):
        self._dsn = dsn
        self._connect_kwargs = connect_kwargs
        self._on_notice = on_notice
        self._closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        backoff = 0.1
        connected_once = False
        failing = False
        while not self._closed.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self._dsn, **self._connect_kwargs)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                if failing:
                    log.info("listening for notices again")
                if connected_once:
                    self._on_notice("unknown")  # notices sent while we were away are lost
                connected_once, failing, backoff = True, False, 0.1
                self._listen(conn)
            except (psycopg2.Error, OSError) as exc:
                if not failing and not self._closed.is_set():
                    log.warning(
                        "cannot listen for notices (%s); polling only until it is back",
                        first_line(exc),
                    )
                failing = True
            finally:
                if conn is not None:
                    conn.close()
            if self._closed.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_RECONNECT_BACKOFF_S)

    def _listen(self, conn: psycopg2.extensions.connection) -> None:
        while not self._closed.is_set():
            readable, _, _ = select.select([conn.fileno(), self._wake_r], [], [], 5.0)
            if self._wake_r in readable:
                return
            conn.poll()  # raises when the connection is gone
            while conn.notifies:
                notice = conn.notifies.pop(0)
                self._on_notice(notice.payload or "unknown")
