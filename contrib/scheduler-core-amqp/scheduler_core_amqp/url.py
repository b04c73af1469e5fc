"""Reading an `amqp://` or `amqps://` webhook URL into where and how to publish.

``amqp[s]://user:password@host:port/vhost?exchange=X&routing_key=K``

- user and password are percent-decoded; without userinfo pika's default, guest/guest,
  is used (as the RabbitMQ URI spec says: the client's default).
- the port defaults to 5672 (amqp) or 5671 (amqps).
- the vhost is the path's one segment, percent-decoded (``%2F`` for ``/``); no path or
  ``/`` alone is the default vhost ``/``.
- ``exchange`` (default: empty, the default exchange) and ``routing_key`` (default
  empty; with the default exchange, the queue's name) are the only query parameters.
  Their values are percent-decoded; ``+`` stays a plus sign.

Errors never quote the URL: it carries credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEMES = ("amqp", "amqps")
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
DEFAULT_USER = "guest"
DEFAULT_PASSWORD = "guest"
QUERY_KEYS = ("exchange", "routing_key")
MAX_SHORTSTR = 255  # exchange names and routing keys are AMQP short strings


class InvalidURL(ValueError):
    """The URL cannot be published to; the message says why, without the URL."""


@dataclass(frozen=True)
class Endpoint:
    """Where one callback goes: the broker, the login, the vhost, the exchange and key."""

    scheme: str
    host: str  # as the URL names it, lower case, without IPv6 brackets
    port: int
    vhost: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    exchange: str = ""
    routing_key: str = ""
    userinfo: str = field(default="", repr=False)  # as written in the URL, still encoded

    @property
    def tls(self) -> bool:
        return self.scheme == "amqps"

    @property
    def broker_key(self) -> tuple[str, str, int, str, str, str]:
        """What connections to this endpoint's broker are shared by: the same broker,
        vhost and login (exchange and routing key are per message)."""
        return (self.scheme, self.host, self.port, self.vhost, self.username, self.password)

    def secrets(self) -> list[str]:
        """The credentials, in every spelling an error text could carry them."""
        found = {self.userinfo, unquote(self.userinfo), self.username, self.password}
        raw_user, _, raw_password = self.userinfo.partition(":")
        found.update({raw_user, raw_password})
        # Shorter than this, a "secret" would blot out ordinary words of a message.
        return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def parse(url: str) -> Endpoint:
    """The endpoint `url` names; raises InvalidURL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidURL("not a valid URL (its host or port cannot be read)") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidURL(f"scheme {scheme!r} is not amqp or amqps")
    if "#" in url:
        raise InvalidURL("a '#' starts a URL fragment: percent-encode it as %23")
    host = parts.hostname
    if not host:
        raise InvalidURL("the URL names no host")
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        username = unquote(parts.username or "")
        password = unquote(parts.password or "")
    else:
        userinfo, username, password = "", DEFAULT_USER, DEFAULT_PASSWORD
    path = parts.path
    if path in ("", "/"):
        vhost = "/"
    else:
        segment = path[1:]
        if "/" in segment:
            raise InvalidURL("the vhost must be one path segment: percent-encode '/' as %2F")
        vhost = unquote(segment)
    query = _query(parts.query)
    exchange = query.get("exchange", "")
    routing_key = query.get("routing_key", "")
    for name, value in (("exchange", exchange), ("routing_key", routing_key)):
        if len(value.encode("utf-8")) > MAX_SHORTSTR:
            raise InvalidURL(f"{name} is longer than {MAX_SHORTSTR} bytes")
    return Endpoint(
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        vhost=vhost,
        username=username,
        password=password,
        exchange=exchange,
        routing_key=routing_key,
        userinfo=userinfo,
    )


def _query(query: str) -> dict[str, str]:
    """The query's parameters, percent-decoded (a '+' is a plus sign here, not a space:
    routing keys use it). Unknown or repeated parameters are refused: a misspelt
    `routingkey` must not publish somewhere else without a word."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = unquote(raw_key)
        if key not in QUERY_KEYS:
            raise InvalidURL(
                f"unknown query parameter {key[:40]!r} (known: {', '.join(QUERY_KEYS)})"
            )
        if key in found:
            raise InvalidURL(f"query parameter {key!r} is given twice")
        found[key] = unquote(raw_value)
    return found
