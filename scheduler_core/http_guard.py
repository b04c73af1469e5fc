"""Which browsers may use an open API: the Host check (DNS rebinding) and the Origin check
(cross-site requests), and the parsing of SCHEDULER_ALLOWED_HOSTS / SCHEDULER_CORS_ORIGINS.

No Flask here: settings.py reads the lists at start, scheduler_core.api.cross_origin applies
the policy to requests.

A Host is allowed when it names the address `serve` listens on (any port: a port mapping or
a proxy may change it): that IP address; any loopback address or `localhost` for a loopback
listener; any IP address or `localhost` for a wildcard listener (0.0.0.0, ::), since an IP
literal in Host can never be a rebound name. Any other name must be listed in
SCHEDULER_ALLOWED_HOSTS (`api.example.com`, or `*.example.com` for every subdomain).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WILDCARD_LISTENERS = frozenset({"", "0.0.0.0", "::", "*"})
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _split_list(raw: str | None) -> list[str]:
    return [item for item in re.split(r"[,\s]+", raw or "") if item]


def _ip(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def host_name(header: str) -> str | None:
    """The host part of a Host header value (`name`, `name:port`, `[v6]:port`), lowercased
    and without a trailing dot; None when it is not a well-formed host."""
    value = header.strip().lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        return inside if _ip(inside) is not None else None
    name, colon, port = value.partition(":")
    if colon and not re.fullmatch(r"\d{1,5}", port):
        return None
    name = name[:-1] if name.endswith(".") else name
    if _ip(name) is not None or _NAME.match(name):
        return name
    return None


def parse_allowed_hosts(raw: str | None) -> tuple[str, ...]:
    """SCHEDULER_ALLOWED_HOSTS: names (or IP addresses), `*.suffix` for every subdomain;
    separated by commas or spaces. Raises ValueError with a one-line reason."""
    hosts = []
    for item in _split_list(raw):
        entry = item.lower()
        if entry == "*":
            raise ValueError(
                "SCHEDULER_ALLOWED_HOSTS: '*' would turn the DNS-rebinding check off; list "
                "the names clients use, or set SCHEDULER_API_KEYS (the check applies only "
                "to an open API)"
            )
        wildcard = entry.startswith("*.")
        name = entry[2:] if wildcard else entry
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if _ip(name) is None and (":" in name or "/" in name):
            raise ValueError(
                f"SCHEDULER_ALLOWED_HOSTS: {item!r} is not a host name; give names without a "
                "scheme or port (any port is accepted)"
            )
        name = name[:-1] if name.endswith(".") else name
        if not (_ip(name) is not None and not wildcard) and not _NAME.match(name):
            raise ValueError(f"SCHEDULER_ALLOWED_HOSTS: {item!r} is not a host name")
        hosts.append(f"*.{name}" if wildcard else str(_ip(name) or name))
    return tuple(hosts)


def parse_cors_origins(raw: str | None) -> tuple[str, ...]:
    """SCHEDULER_CORS_ORIGINS: origins as browsers send them (`https://app.example.com`,
    `http://localhost:3000`), separated by commas or spaces. Raises ValueError."""
    origins = []
    for item in _split_list(raw):
        entry = item.lower().rstrip("/")
        if entry in {"*", "null"}:
            raise ValueError(
                f"SCHEDULER_CORS_ORIGINS: {item!r} is not accepted; list each origin "
                "(scheme://host[:port])"
            )
        match = re.fullmatch(r"([a-z][a-z0-9+.-]*)://([^/?#@\s]+)", entry)
        if match is None or host_name(match.group(2)) is None:
            raise ValueError(
                f"SCHEDULER_CORS_ORIGINS: {item!r} is not an origin; write "
                "scheme://host[:port], without a path"
            )
        scheme, netloc = match.groups()
        default_port = _DEFAULT_PORTS.get(scheme)
        if default_port and netloc.endswith(f":{default_port}"):  # browsers omit it
            netloc = netloc[: -len(default_port) - 1]
        origins.append(f"{scheme}://{netloc}")
    return tuple(origins)


@dataclass(frozen=True)
class HostPolicy:
    """The Host names and browser origins an open API answers."""

    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    listen_ips: frozenset[IPAddress] = field(default_factory=frozenset)
    listen_names: frozenset[str] = field(default_factory=frozenset)
    any_ip: bool = False
    loopback: bool = True

    @classmethod
    def for_listener(
        cls,
        listen_host: str | None,
        allowed_hosts: tuple[str, ...] = (),
        cors_origins: tuple[str, ...] = (),
    ) -> HostPolicy:
        """The policy of a server listening on `listen_host` (None: an app not served by
        `scheduler serve`, say a test client or another WSGI server on loopback)."""
        host = (listen_host if listen_host is not None else "127.0.0.1").strip().lower()
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if host in WILDCARD_LISTENERS:
            return cls(allowed_hosts, cors_origins, any_ip=True, loopback=True)
        address = _ip(host)
        if address is not None:
            ips: frozenset[IPAddress] = frozenset({address})
            return cls(allowed_hosts, cors_origins, ips, loopback=address.is_loopback)
        # A name: the name itself, and the addresses it stands for on this machine.
        resolved: set[IPAddress] = set()
        try:
            for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM):
                found = _ip(str(info[4][0]).split("%")[0])
                if found is not None:
                    resolved.add(found)
        except (OSError, UnicodeError):
            pass
        loopback = host == "localhost" or any(ip.is_loopback for ip in resolved)
        return cls(
            allowed_hosts, cors_origins, frozenset(resolved), frozenset({host}), loopback=loopback
        )

    def allows_host(self, header: str | None) -> bool:
        """Whether a request with this Host header may use an open API. No Host at all
        (HTTP/1.0) is not a browser's request, and is allowed."""
        if header is None or header == "":
            return True
        name = host_name(header)
        if name is None:
            return False
        address = _ip(name)
        if address is not None:
            return (
                self.any_ip
                or (self.loopback and address.is_loopback)
                or address in self.listen_ips
                or str(address) in self.allowed_hosts
            )
        if name == "localhost" and (self.loopback or self.any_ip):
            return True
        if name in self.listen_names or name in self.allowed_hosts:
            return True
        return any(
            entry.startswith("*.") and name.endswith(entry[1:]) for entry in self.allowed_hosts
        )

    def lists_origin(self, origin: str) -> bool:
        """Whether `origin` (an Origin header) is one of SCHEDULER_CORS_ORIGINS."""
        return origin.strip().lower() in self.cors_origins

    @staticmethod
    def same_origin(origin: str, host_header: str | None) -> bool:
        """Whether `origin` is the origin the request was sent to (a page served by this
        very host:port, e.g. the /docs page): its host[:port] is the Host header's."""
        if not host_header:
            return False
        _scheme, sep, netloc = origin.strip().lower().partition("://")
        return bool(sep) and netloc == host_header.strip().lower()
