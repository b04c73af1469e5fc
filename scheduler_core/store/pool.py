"""A small blocking pool of psycopg2 connections.

psycopg2's own pools raise at once when exhausted and close every connection handed
back beyond `minconn`; under a threaded server that churn costs more than the queries.
This pool keeps up to `size` connections open, blocks a caller until one is free, and
drops the idle ones after a connection error (the server probably restarted).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import psycopg2
import psycopg2.extensions

from scheduler_core.redaction import scrub
from scheduler_core.store.base import StoreUnavailable

CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class ConnectionPool:
    def __init__(self, dsn: str, size: int, checkout_timeout: float = 10.0, **connect_kwargs: Any):
        self._dsn = dsn
        self._connect_kwargs = connect_kwargs
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg2.extensions.connection] = []
        self._lock = threading.Lock()
        self._checkout_timeout = checkout_timeout
        self.size = size

    def _open(self) -> psycopg2.extensions.connection:
        try:
            return psycopg2.connect(self._dsn, **self._connect_kwargs)
        except CONNECTION_ERRORS as exc:
            reason = dsn_error_text(exc, self._dsn)
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {reason}") from exc

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """A connection for one unit of work; committed by the caller."""
        if not self._slots.acquire(timeout=self._checkout_timeout):
            raise StoreUnavailable("no database connection became free in time")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._open()
            yield conn
        except CONNECTION_ERRORS as exc:
            if not _connection_lost(conn, exc):
                raise  # a deadlock or a cancelled statement: the connection is still fine
            self._discard_idle()
            raise StoreUnavailable(f"database connection lost: {first_line(exc)}") from exc
        finally:
            if conn is not None:
                self._give_back(conn)
            self._slots.release()

    def _give_back(self, conn: psycopg2.extensions.connection) -> None:
        if not conn.closed and not conn.autocommit:
            status = conn.get_transaction_status()
            if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                try:
                    conn.rollback()
                except CONNECTION_ERRORS:
                    conn.close()
        if conn.closed or conn.autocommit:
            if not conn.closed:
                conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        self._discard_idle()


def _connection_lost(conn: psycopg2.extensions.connection | None, exc: BaseException) -> bool:
    """True when `exc` means the server or the link is gone, not that a statement failed."""
    if conn is None or conn.closed:
        return True
    code = getattr(exc, "pgcode", None)
    # No SQLSTATE: libpq's own error. 08: connection exception. 57P: server shutting down.
    return code is None or code.startswith(("08", "57P"))


def dsn_error_text(exc: BaseException, dsn: str) -> str:
    """The first line of a libpq error about `dsn`, with any quoted part of it that holds
    the URL's credentials (or looks like a URL) replaced: libpq quotes what it could not
    read, a password with a stray `%`, a whole URL with a missing `]`."""
    text = first_line(exc)
    secrets = [s for s in _dsn_secrets(dsn) if s]

    def quoted(match: re.Match[str]) -> str:
        inner = match.group(1)
        if "@" in inner or "://" in inner or any(s in inner for s in secrets):
            return '"[redacted]"'
        return match.group(0)

    text = re.sub(r'"([^"]*)"', quoted, text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return scrub(text)


def _dsn_secrets(dsn: str) -> list[str]:
    """The URL itself, its userinfo and password (as written and decoded) and the value
    of any query parameter naming a password (`?password=...`, `?sslpassword=...`)."""
    authority = dsn.partition("://")[2].split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    query = dsn.partition("?")[2]
    passwords = [
        value
        for key, _, value in (pair.partition("=") for pair in query.split("&"))
        if "pass" in key.lower()
    ]
    return [dsn, userinfo, password, unquote(password), *passwords, *map(unquote, passwords)]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
