"""A URL's credentials (userinfo, query values) as the API shows them, as lastError hunts
them in an echo, and as every log line is scrubbed of them."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from scheduler_core.judgement import clean_error
from scheduler_core.logs import setup_logging
from scheduler_core.models import ClaimedTask
from scheduler_core.redaction import masked_url, query_values, scrub, secrets_of


@pytest.mark.parametrize(
    "url,shown",
    [
        ("https://example.com/hook", "https://example.com/hook"),
        ("https://user:pw@example.com/hook", "https://***@example.com/hook"),
        ("https://t0ken@example.com:8443/h", "https://***@example.com:8443/h"),
        ("http://a@b@example.com/x", "http://***@example.com/x"),
        ("http://h/x?token=abc&n=1", "http://h/x?token=***&n=***"),
        ("http://h/x?bare&empty=&k=v", "http://h/x?***&empty=&k=***"),
        ("http://h/x?k=v#frag", "http://h/x?k=***#***"),
        ("http://h/p@th?k=v", "http://h/p@th?k=***"),  # an @ in the path is no userinfo
        ("http://[::1]:80/x", "http://[::1]:80/x"),
    ],
)
def test_the_api_shows_a_url_without_its_credentials(url, shown):
    assert masked_url(url) == shown


def test_query_values_are_every_value_and_every_bare_parameter():
    assert query_values("http://h/x?a=1&b&c=&d=x=y;e=2#f=3") == ["1", "b", "x=y", "2"]
    assert query_values("http://h/x") == []


def claimed(url: str, auth: str | None = None) -> ClaimedTask:
    return ClaimedTask(
        id="t",
        webhook_url=url,
        webhook_auth=auth,
        execute_at=None,  # type: ignore[arg-type]
        payload_json="null",
        attempt=1,
        attempts_in_budget=1,
        max_retries=None,
    )


def test_an_echoed_query_value_is_redacted_from_last_error():
    task = claimed("http://h/x?token=Q-s3cret-v4lue&page=2")
    error = clean_error("HTTP 500: no route for /x?token=Q-s3cret-v4lue&page=2", task)
    assert "Q-s3cret-v4lue" not in error
    assert "[redacted]" in error


def test_userinfo_sent_as_basic_is_redacted_in_its_base64_form():
    task = claimed("http://svc:Us3r-pa55word@h/x")
    sent = base64.b64encode(b"svc:Us3r-pa55word").decode()
    assert sent in secrets_of(task)
    error = clean_error(f"HTTP 401: bad credentials Basic {sent}", task)
    assert sent not in error and "Us3r-pa55word" not in error
    # With webhookAuth the client sends that instead, so the userinfo's Basic is not hunted
    # (it is harmless to, but a short one would blot out more than it should).
    assert sent not in secrets_of(claimed("http://svc:Us3r-pa55word@h/x", "Bearer x"))


def test_scrub_takes_credentials_out_of_any_url_in_a_line():
    line = (
        'http://127.0.0.1:80 "POST /x?token=abc&n=1 HTTP/1.1" 500 12; '
        "retry postgresql://u:pw@db/x and https://tok@h/p; Failing row contains (1, x, y)."
    )
    assert scrub(line) == (
        'http://127.0.0.1:80 "POST /x?token=***&n=*** HTTP/1.1" 500 12; '
        "retry postgresql://***@db/x and https://***@h/p; Failing row contains (...)"
    )


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    urllib3_level = logging.getLogger("urllib3").level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("urllib3").setLevel(urllib3_level)


def test_at_debug_urllib3_request_lines_are_silenced_and_its_warnings_scrubbed(
    root_logging, capsys
):
    setup_logging("DEBUG")
    pool = logging.getLogger("urllib3.connectionpool")
    pool.debug(
        '%s://%s:%s "%s %s %s" %s %s', "http", "h", 80, "POST", "/x?t=abc", "HTTP/1.1", 500, 3
    )
    pool.warning("Failed to parse headers (url=%s): %s", "http://u:pw@h/x?t=abc", "bad")
    logging.getLogger("scheduler_core.test").debug("still logged at %s", "DEBUG")

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    # Greedy on purpose: a query runs to the next space, whatever a value may hold.
    assert lines[0].endswith("Failed to parse headers (url=http://***@h/x?t=*** bad")
    assert lines[1].endswith("still logged at DEBUG")
