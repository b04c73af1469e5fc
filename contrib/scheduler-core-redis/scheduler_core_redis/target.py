"""A `redis://` or `rediss://` webhook URL, read once into a `RedisTarget`.

    redis[s]://[[user]:password@]host[:port][/db]?stream=NAME[&maxlen=N]
    redis[s]://[[user]:password@]host[:port][/db]?channel=NAME[&require_subscribers=1]

Exactly one of `stream` and `channel`. Anything the URL gets wrong raises
`InvalidRedisURL`, whose message names the part without quoting it: the URL's
credentials and query values are secrets (SPEC "Security").
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss")
DEFAULT_PORT = 6379
MAX_DB = 1_000_000  # SELECT refuses what the server does not have; this only bounds parsing

# Hashes passwords into pool keys: a connection is only reused with the password it
# authenticated with, and no key (in a repr, a traceback) spells one.
_KEY_SALT = os.urandom(16)

MIN_USER_NAME = 4

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


class InvalidRedisURL(ValueError):
    """The URL cannot be delivered to; the message says why without quoting it."""


@dataclass(frozen=True)
class RedisTarget:
    tls: bool
    host: str  # lower case, IPv6 brackets removed
    port: int
    db: int
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)
    stream: str | None = None
    channel: str | None = None
    maxlen: int | None = None  # XADD MAXLEN ~ N
    require_subscribers: bool = False
    # The userinfo as written (percent-encoded), for scrubbing error messages.
    userinfo: str = field(default="", repr=False)

    @property
    def pool_key(self) -> tuple[object, ...]:
        """Connections are shared by targets with equal keys: the same server, database
        and credentials (the password as a keyed hash)."""
        secret = b""
        if self.password is not None:
            secret = hmac.new(_KEY_SALT, self.password.encode(), hashlib.sha256).digest()
        return (self.tls, self.host, self.port, self.db, self.username, secret)

    def secrets(self) -> list[str]:
        """What an error message must never contain: the userinfo as written, and the
        password as written and decoded (any length); the user name too unless it is
        shorter than MIN_USER_NAME (replacing a two-letter word would shred the text)."""
        found = {self.userinfo} if self.userinfo else set()
        if self.password:
            found.add(self.password)
        if self.userinfo:
            user, _, password = self.userinfo.partition(":")
            if password:
                found.add(password)
            if len(user) >= MIN_USER_NAME:
                found.add(user)
        if self.username and len(self.username) >= MIN_USER_NAME:
            found.add(self.username)
        # Longest first, so a password is replaced whole before a part of it could be.
        return sorted(found, key=len, reverse=True)


def parse_target(url: str) -> RedisTarget:
    """Read `url`; raise InvalidRedisURL when it is not a deliverable Redis target."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRedisURL("not a valid URL (port or host part)") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidRedisURL("the scheme must be redis or rediss")
    host = parts.hostname
    if not host:
        raise InvalidRedisURL("the URL must name a host")
    if port == 0:
        raise InvalidRedisURL("port 0 cannot be connected to")
    if parts.fragment:
        raise InvalidRedisURL("a fragment (#...) means nothing here; remove it")

    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if username is not None and password is None:
        raise InvalidRedisURL(
            "a user name needs a password: use redis://user:password@host or redis://:password@host"
        )

    db = _db(parts.path)
    params = _query(parts.query)
    stream = params.pop("stream", None)
    channel = params.pop("channel", None)
    maxlen_text = params.pop("maxlen", None)
    require_text = params.pop("require_subscribers", None)
    if params:
        unknown = ", ".join(sorted(params))
        raise InvalidRedisURL(
            f"unknown query parameter(s): {unknown} "
            "(known: stream, channel, maxlen, require_subscribers)"
        )
    if (stream is None) == (channel is None):
        raise InvalidRedisURL("exactly one of ?stream=NAME and ?channel=NAME is required")
    if stream == "" or channel == "":
        raise InvalidRedisURL("the stream or channel name must not be empty")

    maxlen = None
    if maxlen_text is not None:
        if stream is None:
            raise InvalidRedisURL("maxlen applies to a stream only")
        if not (maxlen_text.isascii() and maxlen_text.isdigit()) or len(maxlen_text) > 12:
            raise InvalidRedisURL("maxlen must be a whole number of entries")
        maxlen = int(maxlen_text)
        if maxlen < 1:
            raise InvalidRedisURL("maxlen must be at least 1")

    require_subscribers = False
    if require_text is not None:
        if channel is None:
            raise InvalidRedisURL("require_subscribers applies to a channel only")
        if require_text.lower() in _TRUE:
            require_subscribers = True
        elif require_text.lower() not in _FALSE:
            raise InvalidRedisURL("require_subscribers must be 1 or 0")

    return RedisTarget(
        tls=scheme == "rediss",
        host=host,
        port=port or DEFAULT_PORT,
        db=db,
        username=username,
        password=password,
        stream=stream,
        channel=channel,
        maxlen=maxlen,
        require_subscribers=require_subscribers,
        userinfo=userinfo,
    )


def _db(path: str) -> int:
    text = path[1:] if path.startswith("/") else path
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit()) or int(text) >= MAX_DB:
        raise InvalidRedisURL("the path must be a database number, like /0")
    return int(text)


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        key = unquote(key)
        if not eq:  # such a bare word may be a token: it is not quoted
            raise InvalidRedisURL("every query parameter needs a value (name=value)")
        if key in params:
            raise InvalidRedisURL(f"query parameter {key[:40]!r} is given twice")
        params[key] = unquote(value)
    return params
