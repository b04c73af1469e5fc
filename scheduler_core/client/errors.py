"""What the client raises: an `ApiError` per answer the API refused, a `TransportError`
when no answer came.

Every `ApiError` carries the API's error (SPEC.md, "Errors are JSON ..."): `status` (the
HTTP status), `code` (``validation_error``, ``not_found``, ``conflict``...), `message`
and `details` (for a 400, field by field). A subclass per status lets callers catch what
they handle::

    try:
        client.cancel(task_id)
    except NotFound:
        ...                      # gone already
    except Conflict as exc:
        exc.details["status"]    # "resolved" or "running"

No message, repr or attribute ever holds the API key.
"""

from __future__ import annotations

from typing import Any

# The API's codes by status, for answers that carry no JSON error (a proxy's 502 page).
DEFAULT_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


class ClientError(Exception):
    """Base of everything the client raises."""


class TransportError(ClientError):
    """No answer: the connection was refused or dropped, the name did not resolve, or the
    timeout passed. `url` is the request's URL (credentials masked); `reason` a few
    words on what failed. After retries, this is the last attempt's failure. (The
    `requests` exception is not kept: its request holds the Authorization header.)"""

    def __init__(self, message: str, url: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.reason = reason


class ApiError(ClientError):
    """The server answered with an error status.

    `status`: the HTTP status; `code`: the API's error code (or, for an answer without
    the API's JSON error shape, a code named after the status, like ``bad_gateway``);
    `message`: the API's message; `details`: the API's details (``{}`` when none);
    `retry_after`: seconds from a ``Retry-After`` header, or None.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.retry_after = retry_after

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, code={self.code!r}, message={self.message!r})"


class ValidationError(ApiError):
    """400: the request was refused; `details` names each field and why."""


class Unauthorized(ApiError):
    """401: no API key, or not one the server holds."""


class Forbidden(ApiError):
    """403: refused by origin or Host checks."""


class NotFound(ApiError):
    """404: no such task (or route)."""


class Conflict(ApiError):
    """409: the task's state forbids the change; `details["status"]` says which state."""


class Gone(ApiError):
    """410: an expired one-time URL."""


class PayloadTooLarge(ApiError):
    """413: the body is over the server's limit."""


class ServerError(ApiError):
    """5xx: the server failed (500), or a proxy before it did (502, 504)."""


class Unavailable(ServerError):
    """503: the database is unreachable, or the server is overloaded; try again later."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    503: Unavailable,
}


def error_class(status: int) -> type[ApiError]:
    """The ApiError subclass for an HTTP status (ApiError itself for one with none)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ApiError
