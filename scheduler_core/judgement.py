"""The core's judgement of an answer: what a delivery plugin's raw report comes to.

One place decides, for every transport: only a final response counts (informational 1xx
answers are not final), a status in the task's successCodes (default 2xx) resolves, one in
its staleCodes fails the attempt and ends the task stale at once (a code named beats a
class: `rule_verdict`), anything else fails the attempt; a transport with no status (a
broker's confirm) resolves; Retry-After is read within sane bounds; and the error a user
will read in ``lastError`` is printable, at most ``MAX_ERROR_CHARS`` long, and never
contains the task's webhookAuth, even when a receiver echoes it back.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from scheduler_core.models import ClaimedTask, DeliveryOutcome, DeliveryReport
from scheduler_core.redaction import redact, redact_bytes, secrets_of
from scheduler_core.status_codes import DEFAULT_SUCCESS_CODES, matches

MAX_ERROR_CHARS = 500
ERROR_QUOTE_CHARS = 200  # how much of a failed answer's body lastError quotes
# The quote is cut from this much of the body, cleaned and redacted first: a secret that
# starts inside the quote is redacted whole, never cut into a telling prefix.
QUOTE_SOURCE_BYTES = 4 * MAX_ERROR_CHARS
# Retry-After is capped here at once; the retry policy caps it again at retry_backoff_max_ms.
MAX_RETRY_AFTER_MS = 604_800_000
# Said after the status in lastError, so a user sees why no retry followed.
STALE_CODE_NOTE = " (a staleCode: no retry)"
# Scheduler-Snooze answers in a row a task takes; the next one is a failed attempt.
MAX_SNOOZES_IN_ROW = 100
# The longest wait a Scheduler-Async header may ask for (a day).
MAX_ASYNC_TIMEOUT_S = 86_400


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
    steered = steered_by_receiver(task, report, status, duration_ms)
    if steered is not None:  # Scheduler-Snooze, or a 202 with Scheduler-Async
        return steered
    verdict = rule_verdict(task, status)
    if verdict == "success":
        return DeliveryOutcome(ok=True, status_code=status, duration_ms=duration_ms)
    stale_now = verdict == "stale"
    quoted = quote(report.body, task)
    if stale_now:  # said before the quote, which may be cut
        described = describe_status(status) + STALE_CODE_NOTE + (f": {quoted}" if quoted else "")
    else:
        described = describe_status(status, quoted)
    return DeliveryOutcome(
        ok=False,
        status_code=status,
        stale_now=stale_now,
        error=clean_error(described, task),
        duration_ms=duration_ms,
        retry_after_ms=parse_retry_after(
            header(report.headers, "Retry-After"), now=answer_time(task, report.headers)
        ),
    )


def rule_verdict(task: ClaimedTask, status: int) -> str | None:
    """What `task`'s rules make of a final `status`: "success" (successCodes, default
    2xx), "stale" (staleCodes) or None (a failure, retried). The more precise rule wins: a
    code named in one list beats a class in the other (successCodes [409] with staleCodes
    ["4xx"]: 409 resolves, 404 is stale); the API refuses a code or class in both. An
    informational 1xx is no final answer, whatever the rules say."""
    if status < 200:
        return None
    success = task.success_codes if task.success_codes is not None else DEFAULT_SUCCESS_CODES
    stale = task.stale_codes or ()
    if status in success:
        return "success"
    if status in stale:
        return "stale"
    if matches(success, status):
        return "success"
    if matches(stale, status):
        return "stale"
    return None


def steered_by_receiver(
    task: ClaimedTask, report: DeliveryReport, status: int, duration_ms: int
) -> DeliveryOutcome | None:
    """What the receiver's own headers make of an answer (SPEC "Delivery rules"), or None
    when they say nothing usable and the status is judged as usual.

    - ``Scheduler-Snooze: <delta-seconds | HTTP-date>`` on any answer: call again then, no
      retry spent (``snooze_ms``; the retry policy is not asked). A malformed value is
      ignored. After MAX_SNOOZES_IN_ROW snoozes in a row, the next is a failed attempt.
    - ``202`` with ``Scheduler-Async: <seconds>`` (an integer 1..86,400): the receiver
      reports later through the completion URLs (``async_timeout_s``). Otherwise, or out
      of range, the 202 is judged like any answer.
    """
    snooze = header(report.headers, "Scheduler-Snooze")
    snooze_ms = parse_retry_after(snooze, now=answer_time(task, report.headers)) if snooze else None
    if snooze_ms is not None:
        if task.snoozes_in_row >= MAX_SNOOZES_IN_ROW:
            error = f"snoozed {MAX_SNOOZES_IN_ROW} times in a row"
            return DeliveryOutcome(
                ok=False, status_code=status, error=error, duration_ms=duration_ms
            )
        return DeliveryOutcome(
            ok=False,
            status_code=status,
            error=snooze_error(status, snooze_ms),
            duration_ms=duration_ms,
            snooze_ms=snooze_ms,
        )
    if status == 202:
        timeout_s = parse_async_timeout(header(report.headers, "Scheduler-Async"))
        if timeout_s is not None:
            return DeliveryOutcome(
                ok=True, status_code=status, duration_ms=duration_ms, async_timeout_s=timeout_s
            )
    return None


def snooze_error(status: int | None, delay_ms: int) -> str:
    """lastError of a snoozed attempt: its status and the delay it was given (ms)."""
    return f"HTTP {status}: snoozed for {delay_ms} ms by Scheduler-Snooze"


def parse_async_timeout(value: str | None) -> int | None:
    """Scheduler-Async's seconds: a plain integer from 1 to MAX_ASYNC_TIMEOUT_S, else None."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        return None
    seconds = int(value)
    return seconds if 1 <= seconds <= MAX_ASYNC_TIMEOUT_S else None


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
    """The start of an answer's body as lastError quotes it: decoded (UTF-8, else
    ISO-8859-1), printable, the task's secrets redacted, then cut to ERROR_QUOTE_CHARS."""
    window = body[:QUOTE_SOURCE_BYTES]
    secrets = secrets_of(task) if task is not None else []
    window = redact_bytes(window, secrets)
    try:
        text = window.decode("utf-8")
    except UnicodeDecodeError:
        text = window.decode("latin-1")  # never fails; an echoed header is ISO-8859-1
    # The read window may end inside a secret: its start is redacted too.
    text = redact(printable(text), secrets, cut_at_end=len(body) > QUOTE_SOURCE_BYTES)
    return text[:ERROR_QUOTE_CHARS]


# -- lastError: printable, bounded, no secrets ---------------------------------------------


def clean_error(text: str, task: ClaimedTask | None = None) -> str:
    """`text` as lastError may hold it: printable characters only (others escaped, runs
    of white space folded to one space), the task's webhookAuth and the credentials in its
    URL replaced by ``[redacted]`` in any letter case, at most MAX_ERROR_CHARS long."""
    cut = len(text) > QUOTE_SOURCE_BYTES
    text = printable(text[:QUOTE_SOURCE_BYTES])  # a plugin's error may be any length
    if task is not None:
        text = redact(text, secrets_of(task), cut_at_end=cut)
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


def answer_time(task: ClaimedTask, headers: Mapping[str, str]) -> datetime | None:
    """The time a Retry-After date is measured from: the answer's own `Date` header when it
    has a usable one (both come from the receiver's clock), else the database clock as of
    now (the claim's time plus the monotonic time since): never the host's wall clock,
    which may be stepped."""
    date = header(headers, "Date")
    if date:
        try:
            when = email.utils.parsedate_to_datetime(date)
            return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    if task.next_attempt_at is None or not task.claimed_monotonic:
        return None
    since_claim_ms = task.late_at_claim_ms + (time.monotonic() - task.claimed_monotonic) * 1000
    return task.next_attempt_at + timedelta(milliseconds=since_claim_ms)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header of an answer by name, ignoring case."""
    name = name.lower()
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
