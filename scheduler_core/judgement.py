"""The core's judgement of an answer: what a delivery plugin's raw report comes to.

One place decides, for every transport: only a final response counts (informational 1xx
answers are not final), 2xx resolves, anything else fails the attempt; Retry-After is read
within sane bounds; and the error a user will read in ``lastError`` is printable, at most
``MAX_ERROR_CHARS`` long, and never contains the task's webhookAuth, even when a receiver
echoes it back.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from scheduler_core.models import ClaimedTask, DeliveryOutcome, DeliveryReport

MAX_ERROR_CHARS = 500
ERROR_QUOTE_CHARS = 200  # how much of a failed answer's body lastError quotes
# The quote is cut from this much of the body, cleaned and redacted first: a secret that
# starts inside the quote is redacted whole, never cut into a telling prefix.
QUOTE_SOURCE_BYTES = 4 * MAX_ERROR_CHARS
# Retry-After is capped here at once; the retry policy caps it again at retry_backoff_max_ms.
MAX_RETRY_AFTER_MS = 604_800_000
REDACTED = "[redacted]"
# Credential parts shorter than this are not hunted for on their own (the whole
# webhookAuth value always is): "ab" would blot out half of any message.
MIN_SECRET_PART = 4


def judge(
    task: ClaimedTask, report: DeliveryReport, timeout_ms: int, duration_ms: int
) -> DeliveryOutcome:
    """Turn `report` into the attempt's outcome.

    `timeout_ms` is the attempt's budget (http_callback_timeout_ms), named in timeout
    errors; `duration_ms` is how long the attempt took, as the core measured it.
    """
    status = report.status_code
    if report.timed_out:
        step = report.error or "no complete response"
        error = f"timeout: {step} within the {timeout_ms} ms callback timeout"
        return _failed(task, error, None, duration_ms)
    if report.error is not None:
        return _failed(task, report.error, status, duration_ms)
    if status is None:  # a broker accepted the message
        return DeliveryOutcome(ok=True, duration_ms=duration_ms)
    if 200 <= status < 300:
        return DeliveryOutcome(ok=True, status_code=status, duration_ms=duration_ms)
    return DeliveryOutcome(
        ok=False,
        status_code=status,
        error=clean_error(describe_status(status, quote(report.body, task)), task),
        duration_ms=duration_ms,
        retry_after_ms=parse_retry_after(header(report.headers, "Retry-After")),
    )


def judge_legacy(task: ClaimedTask, outcome: DeliveryOutcome, duration_ms: int) -> DeliveryOutcome:
    """An outcome from a plugin written for the first `scheduler_deliver`: its verdict
    stands, its error is cleaned like the core's own."""
    error = clean_error(outcome.error, task) if outcome.error is not None else None
    retry_after = outcome.retry_after_ms
    if retry_after is not None:
        retry_after = min(max(retry_after, 0), MAX_RETRY_AFTER_MS)
    return DeliveryOutcome(
        ok=outcome.ok,
        status_code=outcome.status_code,
        error=error,
        duration_ms=outcome.duration_ms or duration_ms,
        retry_after_ms=retry_after,
    )


def _failed(task: ClaimedTask, error: str, status: int | None, duration_ms: int) -> DeliveryOutcome:
    return DeliveryOutcome(
        ok=False, status_code=status, error=clean_error(error, task), duration_ms=duration_ms
    )


def describe_status(status: int, quoted: str = "") -> str:
    """`HTTP 503: <the start of the body>`, with a word on what the status means here."""
    message = f"HTTP {status}"
    if 100 <= status < 200:
        message += " (no final response: informational answers do not count)"
    elif 300 <= status < 400:
        message += " (redirects are not followed)"
    if quoted:
        message += f": {quoted}"
    return message


def quote(body: bytes, task: ClaimedTask | None = None) -> str:
    """The start of an answer's body as lastError quotes it: decoded, printable, the task's
    secrets redacted, then cut to ERROR_QUOTE_CHARS."""
    text = printable(body[:QUOTE_SOURCE_BYTES].decode("utf-8", "replace"))
    if task is not None:
        secrets = secrets_of(task)
        text = redact(text, secrets)
        if len(body) > QUOTE_SOURCE_BYTES:  # the read window may end inside a secret
            text = _redact_cut_secret(text, secrets)
    return text[:ERROR_QUOTE_CHARS]


# -- lastError: printable, bounded, no secrets ---------------------------------------------


def clean_error(text: str, task: ClaimedTask | None = None) -> str:
    """`text` as lastError may hold it: printable characters only (others escaped, runs
    of white space folded to one space), the task's webhookAuth and the credentials in its
    URL replaced by ``[redacted]`` in any letter case, at most MAX_ERROR_CHARS long."""
    text = printable(text)
    if task is not None:
        text = redact(text, secrets_of(task))
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def printable(text: str) -> str:
    """White space folded to single spaces; every other unprintable character (NUL, other
    controls, bidi overrides, lone surrogates) written as an escape like ``\\x00``."""
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return " ".join("".join(out).split())


def secrets_of(task: ClaimedTask) -> list[str]:
    """What must never show in lastError: the webhookAuth value, its credential part
    (after the scheme word), a Basic credential decoded, and the URL's userinfo."""
    whole: list[str] = []
    parts: list[str] = []
    auth = task.webhook_auth
    if auth:
        whole.append(auth)
        scheme, _, credential = auth.strip().partition(" ")
        credential = credential.strip()
        if credential:
            parts.append(credential)
            if scheme.lower() == "basic":
                parts.extend(_basic_parts(credential))
    userinfo = _userinfo(task.webhook_url)
    if userinfo:
        whole.append(userinfo)
        parts.append(userinfo.partition(":")[2])
    return whole + [p for p in parts if len(p) >= MIN_SECRET_PART]


def _basic_parts(credential: str) -> list[str]:
    try:
        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return []
    _, _, password = decoded.partition(":")
    return [decoded, password]


def _userinfo(url: str) -> str:
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    return authority.rpartition("@")[0]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (compared as `printable` would show it, ignoring case)
    replaced by ``[redacted]``; longest first, so a part never leaves its whole behind."""
    wanted = {printable(s) for s in secrets} - {""}
    for secret in sorted(wanted, key=len, reverse=True):
        text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return text


def _redact_cut_secret(text: str, secrets: Iterable[str]) -> str:
    folded = text.lower()
    for secret in (printable(s).lower() for s in secrets):
        for size in range(len(secret) - 1, MIN_SECRET_PART - 1, -1):
            if folded.endswith(secret[:size]):
                return text[:-size] + REDACTED
    return text


# -- Retry-After ---------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> int | None:
    """Retry-After (RFC 9110, section 10.2.3) as milliseconds from now: delta-seconds or an
    HTTP-date. None when absent or unusable; at most MAX_RETRY_AFTER_MS; a date in the
    past is 0."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, int("²") raises
        if len(value) > 12:  # more seconds than any cap: no need to build a huge int
            return MAX_RETRY_AFTER_MS
        return min(int(value) * 1000, MAX_RETRY_AFTER_MS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        delta = when - (now or datetime.now(UTC))
    except OverflowError:
        return None
    return min(max(0, int(delta.total_seconds() * 1000)), MAX_RETRY_AFTER_MS)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header of an answer by name, ignoring case."""
    name = name.lower()
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
