"""scheduler-core-redis: deliver scheduler-core callbacks to Redis.

Registered through the ``scheduler_core`` entry-point group (``redis =
"scheduler_core_redis"``), this module claims the ``redis`` and ``rediss`` URL schemes:

- ``redis://[[user]:password@]host[:port][/db]?stream=NAME`` appends the callback to the
  stream NAME (XADD): a ``body`` field with the callback body's exact bytes, then one
  field per callback header, its name in lower case.
- ``...?channel=NAME`` publishes a JSON envelope ``{"headers": {...}, "body": "..."}``
  to the channel NAME (PUBLISH).

See README.md for the URL's options and the failure semantics.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scheduler_core.hookspecs import hookimpl

from scheduler_core_redis.delivery import close_idle_connections, deliver
from scheduler_core_redis.target import SCHEMES, InvalidRedisURL, RedisTarget, parse_target

if TYPE_CHECKING:
    from scheduler_core.models import Callback, DeliveryReport

try:
    __version__ = version("scheduler-core-redis")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    return list(SCHEMES)


@hookimpl
def scheduler_deliver(callback: Callback, deadline: float) -> DeliveryReport | None:
    if urlsplit(callback.url).scheme.lower() not in SCHEMES:
        return None
    return deliver(callback, deadline)


__all__ = [
    "SCHEMES",
    "InvalidRedisURL",
    "RedisTarget",
    "__version__",
    "close_idle_connections",
    "deliver",
    "parse_target",
    "scheduler_deliver",
    "scheduler_delivery_schemes",
]
