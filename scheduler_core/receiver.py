"""For receivers: check that a callback came from your scheduler-core, then read it.

scheduler-core signs every callback when ``SCHEDULER_SIGNING_SECRET`` is set, in the
Standard Webhooks format (https://www.standardwebhooks.com/; the spec text at
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
"Verifying signatures"). Any Standard Webhooks library verifies it; this module is the
Python one for receivers of scheduler-core, built on the ``standardwebhooks`` package::

    import os

    from flask import Flask
    from scheduler_core.receiver import verified_callback

    app = Flask(__name__)

    @app.post("/hooks/report")  # the route first, then the check
    @verified_callback(os.environ["SCHEDULER_SIGNING_SECRET"])  # one or more whsec_...
    def report(callback):          # a bad, missing or stale signature answered 401 already
        build_report(callback["taskId"], callback["payload"])
        return "", 204

Or, with any framework, ``verify_callback(body_bytes, headers, secret)``.

What is signed: ``webhook-id`` (the task id: the same on every attempt of a task), the
``webhook-timestamp`` of the attempt, and the body bytes exactly as sent. The body is
``{"taskId": str, "executeAt": RFC 3339 str, "attempt": int, "payload": any JSON}``. The
``X-Scheduler-*`` headers and ``Authorization`` are not signed: read the task id and the
attempt from the verified body. A captured callback verifies again until its timestamp is
older than the tolerance: to act on each attempt once, remember ``(taskId, attempt)`` for
at least the tolerance; to act on each task once, ``taskId`` (the spec's idempotency key).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from standardwebhooks import Webhook, WebhookVerificationError

from scheduler_core.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    InvalidSigningSecret,
    secret_key,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "CallbackVerificationError",
    "CallbackVerifier",
    "InvalidSigningSecret",
    "verified_callback",
    "verify_callback",
]

DEFAULT_TOLERANCE_S = 300  # the spec's libraries use five minutes
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SOURCE = "signing secret"

R = TypeVar("R")


class HeaderItems(Protocol):
    """Anything with ``items()`` of (name, value): a dict, ``flask.request.headers``, a
    ``requests``/``http.client`` header object..."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class CallbackVerificationError(WebhookVerificationError):
    """The callback's signature does not hold; do not act on it.

    ``reason`` is one of ``"missing-headers"``, ``"bad-timestamp"``, ``"too-old"``,
    ``"too-new"``, ``"bad-signature"``, ``"bad-body"``. A subclass of
    ``standardwebhooks.WebhookVerificationError``, so code catching that catches this too.
    The message never holds a secret.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CallbackVerifier:
    """Verifies callbacks against one or more secrets; build it once, use it per request.

    ``secrets``: one ``whsec_...`` secret, several separated by spaces (the format of
    ``SCHEDULER_SIGNING_SECRET``), or an iterable of them. During a rotation give both the
    old and the new one: a callback verifies when any of its signatures matches any of
    them. ``tolerance_s``: how far ``webhook-timestamp`` may be from this machine's clock,
    either way (replay protection; allow for clock skew).

    Raises ``InvalidSigningSecret`` (a ``ValueError``) at once for a malformed or empty
    secret list, naming the secret by position only.
    """

    def __init__(
        self, secrets: str | Iterable[str], *, tolerance_s: float = DEFAULT_TOLERANCE_S
    ) -> None:
        listed = tuple(secrets.split()) if isinstance(secrets, str) else tuple(secrets)
        if not listed:
            raise InvalidSigningSecret("no signing secret given to verify callbacks with")
        if tolerance_s < 0:
            raise ValueError("tolerance_s must not be negative")
        self._webhooks = tuple(
            Webhook(secret_key(s, position=i, count=len(listed), source=_SOURCE))
            for i, s in enumerate(listed, start=1)
        )
        self.tolerance_s = tolerance_s

    def __repr__(self) -> str:
        return (
            f"CallbackVerifier(<{len(self._webhooks)} secret(s)>, tolerance_s={self.tolerance_s})"
        )

    def verify(
        self, body: bytes | str, headers: HeaderItems, *, now: float | None = None
    ) -> dict[str, Any]:
        """The callback's JSON, once its signature is checked.

        ``body``: the request body exactly as received (raw bytes, never re-serialized
        JSON). ``headers``: the request's headers, names in any letter case. ``now``: Unix
        time to check the timestamp against (default: the clock).

        Returns the parsed body: ``{"taskId": ..., "executeAt": ..., "attempt": n,
        "payload": ...}``. Raises ``CallbackVerificationError`` with its ``reason`` when a
        ``webhook-*`` header is missing, the timestamp is not an integer or is outside the
        tolerance, no signature matches, or the signed body is not a JSON object.
        """
        found = {name.lower(): value for name, value in headers.items()}
        wanted = (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)
        missing = [name for name in wanted if not (found.get(name) or "").strip()]
        if missing:
            raise CallbackVerificationError(
                "missing-headers", f"unsigned callback: no {', '.join(missing)} header"
            )
        message_id = found[HEADER_ID].strip()
        raw_timestamp = found[HEADER_TIMESTAMP].strip()
        if not _TIMESTAMP.fullmatch(raw_timestamp):
            raise CallbackVerificationError(
                "bad-timestamp", "webhook-timestamp is not an integer number of seconds"
            )
        timestamp = int(raw_timestamp)
        clock = time.time() if now is None else now
        if clock - timestamp > self.tolerance_s:
            raise CallbackVerificationError(
                "too-old",
                f"webhook-timestamp is {clock - timestamp:.0f} s old, over the "
                f"{self.tolerance_s:g} s tolerance (a replay, or a clock off)",
            )
        if timestamp - clock > self.tolerance_s:
            raise CallbackVerificationError(
                "too-new",
                f"webhook-timestamp is {timestamp - clock:.0f} s in the future, over the "
                f"{self.tolerance_s:g} s tolerance (a clock off)",
            )
        if isinstance(body, bytes):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise CallbackVerificationError(
                    "bad-signature", "the body is not UTF-8, so it is not what was signed"
                ) from None
        else:
            text = body
        if not self._matches(message_id, timestamp, text, found[HEADER_SIGNATURE]):
            raise CallbackVerificationError(
                "bad-signature",
                f"no webhook-signature matches the {len(self._webhooks)} secret(s) given: "
                "the body or headers were changed, or the secret is not the sender's",
            )
        try:
            callback = json.loads(text)
        except ValueError:
            callback = None
        if not isinstance(callback, dict):
            raise CallbackVerificationError("bad-body", "the signed body is not a JSON object")
        return callback

    def _matches(self, message_id: str, timestamp: int, text: str, header: str) -> bool:
        presented: list[bytes] = []
        for entry in header.split():
            version, _, encoded = entry.partition(",")
            if version != "v1":
                continue  # another scheme (v1a, asymmetric) or garbage: not ours to judge
            try:
                presented.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue
        moment = datetime.fromtimestamp(timestamp, UTC)
        matched = False
        for webhook in self._webhooks:
            expected = base64.b64decode(webhook.sign(message_id, moment, text).partition(",")[2])
            for signature in presented:
                # Constant time, and every pair is compared: timing tells nothing.
                matched |= hmac.compare_digest(expected, signature)
        return matched


def verify_callback(
    body: bytes | str,
    headers: HeaderItems,
    secrets: str | Iterable[str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify one callback and return its parsed JSON body (see ``CallbackVerifier``).

    Example, with any framework::

        callback = verify_callback(request_body_bytes, request_headers, "whsec_...")
        callback["taskId"], callback["attempt"], callback["payload"]

    Raises ``CallbackVerificationError`` (missing header, bad or out-of-tolerance
    timestamp, no matching signature, body not a JSON object) and ``InvalidSigningSecret``
    (a malformed secret).
    """
    return CallbackVerifier(secrets, tolerance_s=tolerance_s).verify(body, headers, now=now)


def verified_callback(
    secrets: str | Iterable[str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    status: int = 401,
) -> Callable[[Callable[..., R]], Callable[..., Any]]:
    """A Flask view decorator: verify the request, then call the view with the parsed
    callback as its first argument (URL variables follow as keyword arguments).

    A request that does not verify is answered ``status`` (401) with
    ``{"error": message, "reason": reason}`` and the view is not called; scheduler-core
    counts that as a failed attempt and retries, so a wrong secret shows in the task's
    ``lastError``. The secrets are checked when the decorator is applied.
    """
    verifier = CallbackVerifier(secrets, tolerance_s=tolerance_s)

    def decorate(view: Callable[..., R]) -> Callable[..., Any]:
        from flask import request  # only receivers built on Flask need it

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                callback = verifier.verify(request.get_data(cache=True), request.headers)
            except CallbackVerificationError as exc:
                return {"error": str(exc), "reason": exc.reason}, status
            return view(callback, *args, **kwargs)

        return wrapper

    return decorate
