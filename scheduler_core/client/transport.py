"""One HTTP exchange with the API, retried only when a retry cannot do harm.

Who may retry is the caller's decision (`retry=True`): a GET, a DELETE (cancelling twice
cancels once), a PATCH to an absolute time, and an enqueue that carries an idempotency
key (the server answers a repeat with the first task). A POST that acts anew each time
(`/retry`, the bulk verbs, an enqueue without a key) is sent once, whatever happens:
when its answer is lost, nobody can tell whether it acted.

What is retried: a connection that failed or dropped, a timeout, and the answers 502,
503 and 504, after an exponential backoff with jitter, or the answer's ``Retry-After``
when it is longer. Never a 4xx, never a 500.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth

from scheduler_core import __version__
from scheduler_core.client.errors import (
    DEFAULT_CODES,
    ApiError,
    TransportError,
    error_class,
)
from scheduler_core.redaction import masked_url

log = logging.getLogger("scheduler_core.client")

RETRY_STATUSES = frozenset((502, 503, 504))
USER_AGENT = f"scheduler-core-client/{__version__}"


class Transport:
    """A `requests.Session` bound to one server, with the retry rule above.

    `retries`: further tries after the first, for requests that may be retried.
    `backoff_s`: the first pause; it doubles per retry, each drawn at random between half
    and all of it, and never passes `max_wait_s`. A ``Retry-After`` longer than
    `max_wait_s` is not waited for: the error is raised, its `retry_after` set.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        retries: int,
        backoff_s: float = 0.25,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(
                f"the server URL must be http(s)://host[:port], not {masked_url(base_url)!r}"
            )
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        # As an `auth`, not a plain header: requests would let a ~/.netrc entry for the
        # host replace a plain Authorization header.
        self._auth = _BearerAuth(api_key) if api_key else None

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    def __repr__(self) -> str:
        return f"Transport({masked_url(self.base_url)!r})"

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        expect_json: bool = True,
        extra_headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send `method path` and return the answer when its status is 2xx; raise
        `ApiError` (a subclass per status) for an error answer, `TransportError` when
        none came. `body` is sent as JSON when not None; `extra_headers` (a traceparent,
        say) go with the request."""
        url = self.base_url + path
        shown = masked_url(url)
        headers = dict(extra_headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        tries = 1 + (self.retries if retry else 0)
        for attempt in range(1, tries + 1):
            last = attempt == tries
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    auth=self._auth,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                reason = describe_failure(exc)
                if last:
                    raise TransportError(
                        f"cannot reach the scheduler at {shown}: {reason}", shown, reason
                    ) from None
                self._pause(method, shown, attempt, reason, None)
                continue
            log.debug("%s %s -> %s", method, shown, response.status_code)
            if response.ok:
                if expect_json:
                    check_json(response, shown)
                return response
            error = api_error(response)
            if last or response.status_code not in RETRY_STATUSES:
                raise error
            if error.retry_after is not None and error.retry_after > self.max_wait_s:
                raise error  # longer than a client should block; the caller decides
            self._pause(method, shown, attempt, f"{error.status} {error.code}", error.retry_after)
        raise AssertionError("unreachable")  # the loop returns or raises on its last try

    def _pause(
        self, method: str, url: str, attempt: int, reason: str, retry_after: float | None
    ) -> None:
        backoff = min(self.max_wait_s, self.backoff_s * 2 ** (attempt - 1))
        delay = random.uniform(backoff / 2, backoff)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.info("%s %s: %s; retrying in %.2f s (retry %d)", method, url, reason, delay, attempt)
        self._sleep(delay)


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <key>``; its repr does not show the key."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "_BearerAuth(<key>)"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request


def describe_failure(exc: requests.RequestException) -> str:
    """A few words for a failed exchange: requests' messages are long reprs of urllib3's
    internals."""
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, requests.Timeout):
        return "timed out waiting for the answer"
    if isinstance(exc, requests.ConnectionError):
        for needle, words in (
            ("Connection refused", "connection refused"),
            ("Name or service not known", "the host name does not resolve"),
            ("nodename nor servname", "the host name does not resolve"),
            ("Temporary failure in name resolution", "the host name does not resolve"),
            ("RemoteDisconnected", "the server closed the connection without answering"),
            ("Connection reset", "the connection was reset"),
            ("Connection aborted", "the connection was closed before the answer"),
            ("SSLError", "TLS failed"),
        ):
            if needle in text:
                return words
        return "connection failed"
    return type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (delta-seconds or an HTTP-date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def api_error(response: requests.Response) -> ApiError:
    """The error an error answer stands for: the API's own JSON error when it sent one,
    else one named after the status that quotes the start of the body."""
    status = response.status_code
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    cls = error_class(status)
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        details = error.get("details")
        return cls(
            status,
            str(error.get("code") or DEFAULT_CODES.get(status, f"http_{status}")),
            error["message"],
            details if isinstance(details, dict) else {},
            retry_after,
        )
    text = " ".join(response.text[:200].split())
    message = f"HTTP {status} {response.reason or ''}".rstrip()
    message += (
        f", not the scheduler's JSON error: {text!r}"
        if text
        else ", with no body (is this the scheduler's URL?)"
    )
    return cls(status, DEFAULT_CODES.get(status, f"http_{status}"), message, {}, retry_after)


def check_json(response: requests.Response, url: str) -> None:
    try:
        response.json()
    except ValueError:
        text = " ".join(response.text[:120].split())
        raise ApiError(
            response.status_code,
            "bad_response",
            f"{url} answered {response.status_code} without JSON ({text!r}): "
            "is this the scheduler's URL?",
        ) from None
