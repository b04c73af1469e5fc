"""scheduler-core-amqp: deliver callbacks to an AMQP 0-9-1 broker (RabbitMQ).

``amqp://user:password@host:port/vhost?exchange=X&routing_key=K`` (and ``amqps://``):
the callback's body is published as it is, its headers as the message's headers, with
publisher confirms and ``mandatory``. The broker's ack resolves the attempt; a nack, a
message returned as unroutable, or no confirm before the deadline fails it.

Registered through the ``scheduler_core`` entry-point group (``amqp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scheduler_core.hookspecs import hookimpl

from scheduler_core_amqp.delivery import publish
from scheduler_core_amqp.url import SCHEMES

if TYPE_CHECKING:
    from scheduler_core.models import Callback, DeliveryReport

__version__ = "0.1.0"
__all__ = ["SCHEMES", "__version__", "scheduler_deliver", "scheduler_delivery_schemes"]


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    return list(SCHEMES)


@hookimpl
def scheduler_deliver(callback: Callback, deadline: float) -> DeliveryReport | None:
    try:
        scheme = urlsplit(callback.url).scheme.lower()
    except ValueError:
        return None
    if scheme not in SCHEMES:
        return None
    return publish(callback, deadline)
