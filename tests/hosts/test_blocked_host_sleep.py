"""A dispatcher whose only due tasks are bound for a blocked host sleeps until the block
ends rather than polling the database for them, then delivers them (both backends)."""

from __future__ import annotations

import threading
import time
from typing import Any

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.models import NewTask
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.store.base import Store
from tests.support.receiver import Receiver

BLOCK_MS = 1500


def test_a_blocked_hosts_tasks_wait_without_polling(
    store: Store, plugins: PluginManager, receiver: Receiver
) -> None:
    url = receiver.url("/later")
    host = url.split("/")[2]
    store.record_host_feedback({host: (BLOCK_MS, 1)}, ())
    blocked_at = time.monotonic()
    store.enqueue([NewTask(webhook_url=url) for _ in range(3)])

    claims: list[float] = []
    claim_queue = store.claim_queue

    def counted(*args: Any, **kwargs: Any) -> Any:
        claims.append(time.monotonic())
        return claim_queue(*args, **kwargs)

    store.claim_queue = counted  # type: ignore[method-assign]
    dispatcher = Dispatcher(store, plugins)
    dispatcher.start()
    try:
        threading.Event().wait(1.0)  # an observation window inside the block
        assert receiver.calls("/later") == []
        assert len(claims) <= 2, f"{len(claims)} claims while the only due host was blocked"
        calls = receiver.wait_for(3, "/later", timeout=5)
        assert min(c.at for c in calls) - blocked_at >= BLOCK_MS / 1000 - 0.1
    finally:
        dispatcher.stop(wait=False)
