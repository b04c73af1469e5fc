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
        build_report(callback.task_id, callback.attempt, callback.payload)
        return "", 204

Or, for any WSGI app (Flask, Django, Falcon, Bottle...), the middleware: it answers 401
before the app sees a request that does not verify, and puts the parsed callback in the
environ (``callback_from_environ(environ)``)::

    app.wsgi_app = CallbackMiddleware(app.wsgi_app, secret, paths="/hooks/")

Or, with any framework at all, ``parse_callback(body_bytes, headers, secret)`` (a
`ReceivedCallback`) or ``verify_callback(...)`` (the body as a dict).

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
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_S",
    "ENVIRON_KEY",
    "CallbackMiddleware",
    "CallbackVerificationError",
    "CallbackVerifier",
    "InvalidSigningSecret",
    "ReceivedCallback",
    "callback_from_environ",
    "parse_callback",
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


@dataclass(frozen=True, eq=False)
class ReceivedCallback(Mapping[str, Any]):
    """A verified callback, parsed: `task_id` (the same on every attempt: the key to
    deduplicate on), `execute_at` (the time the task was asked for, an aware UTC
    datetime), `attempt` (1 for the first try) and `payload` (the task's JSON value).

    It is also a read-only mapping over the JSON body (``callback["taskId"]``), as the
    dict earlier versions handed over, so code written for that keeps working; `body` is
    that JSON object, with any field a newer scheduler adds.
    """

    task_id: str
    execute_at: datetime
    attempt: int
    payload: Any
    body: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ReceivedCallback:
        """Read a callback's JSON body. CallbackVerificationError (``bad-body``) names the
        field that is missing or of the wrong type."""
        task_id, raw_time, attempt = body.get("taskId"), body.get("executeAt"), body.get("attempt")
        if not isinstance(task_id, str) or not task_id:
            raise CallbackVerificationError("bad-body", "the callback has no taskId string")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise CallbackVerificationError("bad-body", "the callback's attempt is not n >= 1")
        try:
            execute_at = datetime.fromisoformat(raw_time) if isinstance(raw_time, str) else None
        except ValueError:
            execute_at = None
        if execute_at is None or execute_at.tzinfo is None:
            raise CallbackVerificationError(
                "bad-body", "the callback's executeAt is not an RFC 3339 time"
            )
        return cls(task_id, execute_at.astimezone(UTC), attempt, body.get("payload"), body)

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.body)

    def __len__(self) -> int:
        return len(self.body)


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

    def parse(
        self, body: bytes | str, headers: HeaderItems, *, now: float | None = None
    ) -> ReceivedCallback:
        """`verify`, then the callback as a `ReceivedCallback`; CallbackVerificationError
        also (``bad-body``) when the signed body lacks a field of the callback."""
        return ReceivedCallback.from_body(self.verify(body, headers, now=now))

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


def parse_callback(
    body: bytes | str,
    headers: HeaderItems,
    secrets: str | Iterable[str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> ReceivedCallback:
    """Verify one callback and return it parsed, for any framework::

        callback = parse_callback(request_body_bytes, request_headers, "whsec_...")
        callback.task_id, callback.attempt, callback.execute_at, callback.payload

    Raises ``CallbackVerificationError`` (as ``verify_callback``, and ``bad-body`` for a
    body without the callback's fields) and ``InvalidSigningSecret``. To verify many
    requests, build one ``CallbackVerifier`` and call its ``parse``.
    """
    return CallbackVerifier(secrets, tolerance_s=tolerance_s).parse(body, headers, now=now)


def verified_callback(
    secrets: str | Iterable[str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    status: int = 401,
) -> Callable[[Callable[..., R]], Callable[..., Any]]:
    """A Flask view decorator: verify the request, then call the view with the parsed
    callback (a `ReceivedCallback`, also readable as the body's dict) as its first
    argument (URL variables follow as keyword arguments).

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
                callback = verifier.parse(request.get_data(cache=True), request.headers)
            except CallbackVerificationError as exc:
                return {"error": str(exc), "reason": exc.reason}, status
            return view(callback, *args, **kwargs)

        return wrapper

    return decorate


# -- WSGI ---------------------------------------------------------------------------------------

ENVIRON_KEY = "scheduler_core.callback"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # the API's 1 MiB body limit, and room to raise it

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def callback_from_environ(environ: Mapping[str, Any]) -> ReceivedCallback | None:
    """The callback `CallbackMiddleware` verified for this request (``None`` when the
    request's path is not one it guards). In Flask: ``callback_from_environ(request.environ)``."""
    callback = environ.get(ENVIRON_KEY)
    return callback if isinstance(callback, ReceivedCallback) else None


class CallbackMiddleware:
    """WSGI middleware: every request to a guarded path is verified before `app` sees it.

    A request that verifies reaches `app` with the parsed `ReceivedCallback` at
    ``environ["scheduler_core.callback"]`` (``callback_from_environ``) and its body
    readable again from ``wsgi.input``. One that does not is answered `status` (401)
    with ``{"error": message, "reason": reason}``, and 413 when its body is over
    `max_body_bytes`; `app` is not called. scheduler-core counts those answers as failed
    attempts and retries, so a wrong secret shows in the task's ``lastError``.

    `paths`: the path prefixes to guard, one or several (``"/hooks/"`` guards
    ``/hooks/...``; the default ``"/"`` guards every request, whatever its method).
    `secrets` and `tolerance_s` as ``CallbackVerifier``; a malformed secret raises
    ``InvalidSigningSecret`` here, at start.
    """

    def __init__(
        self,
        app: WSGIApp,
        secrets: str | Iterable[str],
        *,
        paths: str | Iterable[str] = "/",
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        status: int = 401,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.verifier = CallbackVerifier(secrets, tolerance_s=tolerance_s)
        prefixes = (paths,) if isinstance(paths, str) else tuple(paths)
        self.prefixes = tuple(p.rstrip("/") for p in prefixes)
        self.status = status
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"CallbackMiddleware({self.app!r}, {self.verifier!r}, paths={self.prefixes!r})"

    def guards(self, path: str) -> bool:
        """Whether requests to `path` are verified."""
        return any(p == "" or path == p or path.startswith(p + "/") for p in self.prefixes)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.guards(environ.get("PATH_INFO") or "/"):
            return self.app(environ, start_response)
        body = _read_body(environ, self.max_body_bytes)
        if body is None:
            return _answer(
                start_response,
                413,
                {"error": f"the body is over {self.max_body_bytes} bytes", "reason": "too-large"},
            )
        try:
            callback = self.verifier.parse(body, _environ_headers(environ))
        except CallbackVerificationError as exc:
            return _answer(start_response, self.status, {"error": str(exc), "reason": exc.reason})
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[ENVIRON_KEY] = callback
        return self.app(environ, start_response)


def _read_body(environ: Mapping[str, Any], limit: int) -> bytes | None:
    """The request body, or None when it is over `limit` (then not read beyond it)."""
    stream = environ["wsgi.input"]
    raw_length = (environ.get("CONTENT_LENGTH") or "").strip()
    if raw_length.isdigit():
        length = int(raw_length)
        if length > limit:
            return None
    elif environ.get("wsgi.input_terminated"):  # chunked: read to the end, bounded
        length = limit + 1
    else:
        return b""  # WSGI: without a length there is no body to read
    chunks, left = [], length
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    body = b"".join(chunks)
    return None if len(body) > limit else body


def _environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def _answer(start_response: StartResponse, status: int, body: dict[str, str]) -> list[bytes]:
    from http import HTTPStatus

    data = json.dumps(body).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
