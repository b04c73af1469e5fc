"""Waitress lifecycle for `scheduler serve`: listen, and stop without stranding clients."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer

log = logging.getLogger(__name__)


def stop_listening(server: Any) -> None:
    """Close only the listening socket(s), so new clients are refused at once while the
    dispatcher finishes its deliveries; the server's wake-up pipe stays open for drain()."""
    for channel in list(_socket_map(server).values()):
        if isinstance(channel, BaseWSGIServer):  # a listener, not a client connection
            with contextlib.suppress(OSError):
                wasyncore.dispatcher.close(channel)


def drain(server: Any, timeout: float) -> None:
    """Run the event loop until requests already received are answered, or `timeout`."""
    socket_map = _socket_map(server)

    def busy() -> bool:
        return any(
            getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
            for channel in list(socket_map.values())
        )

    deadline = time.monotonic() + timeout
    while busy() and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=socket_map, count=1)
    if busy():
        log.warning("stopping with API requests still unanswered after %.0fs", timeout)


def _socket_map(server: Any) -> dict[int, Any]:
    # A single listener keeps its map as `_map`; several (MultiSocketServer) as `map`.
    socket_map = getattr(server, "_map", None)
    if socket_map is None:
        socket_map = getattr(server, "map", None)
    return socket_map if socket_map is not None else {}
