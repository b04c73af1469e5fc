"""NATS JetStream delivery for scheduler-core.

A task whose webhookUrl is ``nats://[user:password@]host[:port]/subject`` is delivered by
publishing the core's callback to JetStream: the body bytes exactly as built (and signed),
the callback's headers as NATS message headers, plus ``Nats-Msg-Id`` for JetStream's
de-duplication. The PubAck is success; no stream for the subject, an error from JetStream
or the broker, or no PubAck before the attempt's deadline is a failed attempt.

Registered through the ``scheduler_core`` entry-point group as ``nats``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import DeliveryReport
from scheduler_core_nats.publisher import Message, Publisher
from scheduler_core_nats.target import SCHEME, InvalidTarget, parse_target

if TYPE_CHECKING:
    from scheduler_core.models import Callback

__version__ = "0.1.0"
__all__ = ["MSG_ID_HEADER", "message_id", "publisher", "shutdown"]

MSG_ID_HEADER = "Nats-Msg-Id"

_lock = threading.Lock()
_publisher: Publisher | None = None


def publisher() -> Publisher:
    """The process's publisher (its event loop thread and connections), started on the
    first delivery, not at import."""
    global _publisher
    with _lock:
        if _publisher is None:
            _publisher = Publisher()
        return _publisher


def shutdown() -> None:
    """Close every connection and stop the loop; the next delivery starts a new one."""
    global _publisher
    with _lock:
        current, _publisher = _publisher, None
    if current is not None:
        current.close()


def message_id(callback: Callback) -> str:
    """Nats-Msg-Id: the task and its attempt number.

    JetStream drops a second message with the same id within the stream's duplicate
    window. Per attempt, not per task: a retry is a new attempt with a new id, so it is
    never dropped because an earlier attempt's message reached the stream (its PubAck
    lost, say) or failed; the task id in the callback (X-Scheduler-Task-Id, webhook-id)
    is what receivers de-duplicate on. Within one attempt the id is what makes a re-send
    safe: when a kept connection drops mid-publish the message goes again, and JetStream
    stores it once.
    """
    return f"{callback.task_id}:{callback.attempt}"


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    return [SCHEME]


@hookimpl
def scheduler_deliver(callback: Callback, deadline: float) -> DeliveryReport | None:
    if urlsplit(callback.url).scheme.lower() != SCHEME:
        return None
    try:
        target = parse_target(callback.url)
    except InvalidTarget as exc:
        return DeliveryReport.failed(f"invalid nats URL: {exc}")
    headers = dict(callback.headers)
    if callback.task_id:
        headers[MSG_ID_HEADER] = message_id(callback)
    message = Message(target.subject, callback.body, headers, target.stream)
    return publisher().publish(target, message, deadline)
