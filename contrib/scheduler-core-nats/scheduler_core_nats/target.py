"""A `nats://` webhook URL read into where and how to publish.

    nats://[user:password@ | token@]host[:port]/subject[?stream=NAME]

The subject is the one path segment after the authority (percent-decoded), dot-separated
tokens without wildcards; `stream` optionally names the stream the message must land in
(sent as `Nats-Expected-Stream`). Credentials are secrets: they are kept out of `repr`
and of every error message, and the connection key holds only their hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEME = "nats"
DEFAULT_PORT = 4222

# What NATS refuses in a subject, or what a publish may not carry: white space and control
# characters anywhere, wildcard tokens, empty tokens.
_SUBJECT_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_STREAM_NAME = re.compile(r"[^\s\x00-\x1f\x7f.*>/\\]{1,255}")


class InvalidTarget(ValueError):
    """The URL cannot be published to (the message says why, never quoting the URL)."""


@dataclass(frozen=True)
class NatsTarget:
    host: str  # as written in the URL, brackets removed for IPv6
    port: int
    subject: str
    stream: str | None = None
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def connection_key(self) -> tuple[str, int, str]:
        """One connection per broker and identity: credentials hashed, never the same
        connection for two passwords (a wrong one must fail, not ride on a right one)."""
        identity = "\x00".join((self.user or "", self.password or "", self.token or "")).encode()
        return (self.host.lower(), self.port, hashlib.sha256(identity).hexdigest())

    @property
    def address(self) -> str:
        """host:port as error messages name the broker (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.token) if s]


def parse_target(url: str) -> NatsTarget:
    """Raises InvalidTarget when `url` is not a publishable nats:// URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise InvalidTarget("not a valid URL (host or port)") from None
    if parts.scheme.lower() != SCHEME:
        raise InvalidTarget(f"the scheme must be {SCHEME}://")
    if not parts.hostname:
        raise InvalidTarget("the URL must name a host")
    if parts.fragment:
        raise InvalidTarget("a nats:// URL takes no #fragment")
    subject = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    _check_subject(subject)
    stream = _stream(parts.query)
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    token = None
    if user is not None and password is None:  # nats://TOKEN@host, as NATS clients read it
        user, token = None, user
    return NatsTarget(
        host=parts.hostname,
        port=port,
        subject=subject,
        stream=stream,
        user=user or None,
        password=password,
        token=token or None,
    )


def _check_subject(subject: str) -> None:
    if not subject:
        raise InvalidTarget("the path must name a subject: nats://host:port/subject")
    if "/" in subject:
        raise InvalidTarget("the subject is one path segment; separate its tokens with dots")
    if _SUBJECT_FORBIDDEN.search(subject):
        raise InvalidTarget("the subject must not contain white space or control characters")
    tokens = subject.split(".")
    if any(not token for token in tokens):
        raise InvalidTarget("the subject has an empty token (a leading, trailing or double dot)")
    if any(token in ("*", ">") for token in tokens):
        raise InvalidTarget("the subject must not contain wildcards (* or >)")


def _stream(query: str) -> str | None:
    if not query:
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    unknown = sorted({key for key, _ in pairs if key != "stream"})
    if unknown:
        raise InvalidTarget(f"unknown query parameter(s): {', '.join(unknown)[:100]}")
    streams = [value for _, value in pairs]
    if len(streams) != 1 or not _STREAM_NAME.fullmatch(streams[0]):
        raise InvalidTarget("stream= must name one stream (no dots, wildcards or spaces)")
    return streams[0]
