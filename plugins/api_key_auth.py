"""Built-in auth: `Authorization: Bearer <key>` against SCHEDULER_API_KEYS."""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import TYPE_CHECKING

from scheduler_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from flask import Request

    from scheduler_core.settings import Settings


@hookimpl(trylast=True)
def scheduler_authorize(request: Request, settings: Settings) -> bool:
    if not settings.api_keys:
        return True  # an open API is the documented default; `serve` warns off loopback
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    # Digests of equal length, so compare_digest's time tells nothing about a key's length
    # or content; every key is compared, so it does not tell which one matched either.
    presented = hashlib.sha256(token.strip().encode()).digest()
    matched = False
    for key in _key_digests(settings.api_keys):
        matched |= hmac.compare_digest(presented, key)
    return matched


@functools.lru_cache(maxsize=8)
def _key_digests(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(hashlib.sha256(key.encode()).digest() for key in keys)
