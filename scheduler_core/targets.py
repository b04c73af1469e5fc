"""Where callbacks may go: the target policy (SPEC.md, "Security").

A callback's host is read once, here, into a `Target`: an IP address in its one canonical
form, or a lower-case ASCII name. Every spelling of an address that some URL parser or
resolver would accept ends as the same address, so a rule on 169.254.169.254 also holds
for `2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`, `169.254.43518`, `[::ffff:a9fe:a9fe]`
and `[64:ff9b::a9fe:a9fe]`:

- IPv4 numbers and dotted forms are read as the WHATWG URL Standard's IPv4 parser reads
  them (https://url.spec.whatwg.org/#concept-ipv4-parser): 1 to 4 parts, each decimal,
  `0x` hex or `0` octal, the last part filling the remaining bytes; glibc's inet_aton
  reads the same forms.
- IPv6 literals (in brackets) are reduced to the IPv4 address they carry when they carry
  one: IPv4-mapped `::ffff:0:0/96` (RFC 4291), IPv4-compatible `::/96`, and NAT64's
  well-known prefix `64:ff9b::/96` (RFC 6052). Zone ids (`%eth0`) are refused.
- Names: one trailing dot dropped, IDNA 2008 with UTS #46 mapping (the `idna` package),
  each label 1 to 63 characters, 253 in all. A name that can never resolve is refused.

`TargetPolicy` then says whether a target may be called: link-local and cloud metadata
addresses never; `SCHEDULER_DENIED_TARGETS` closes hosts, `*.` wildcards and CIDRs;
`SCHEDULER_ALLOWED_TARGETS`, when set, admits only what it lists. A name is judged by its
name at enqueue and by every address it resolves to at delivery.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

# Never called, whatever the settings: link-local ranges (where cloud metadata services
# live) and the metadata addresses outside them.
ALWAYS_DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network": a connection to 0.0.0.0 reaches this very host
        "::/128",  # the unspecified IPv6 address, the same
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure's host endpoint (WireServer)
    )
)
ALWAYS_DENIED_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class TargetError(ValueError):
    """A host that is not a valid target (the message says why, without the URL)."""


@dataclass(frozen=True)
class Target:
    """A host in canonical form: exactly one of `ip` and `name` is set."""

    ip: IPAddress | None = None
    name: str | None = None

    def __str__(self) -> str:
        return str(self.ip) if self.ip is not None else str(self.name)


def canonical_ip(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64), else `ip`."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _ipv4_number(part: str) -> int | None:
    if not _IPV4_PART.fullmatch(part):
        return None
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """`host` as an IPv4 address in any form the WHATWG URL parser accepts, or None when
    it is not one. Raises TargetError for what looks like an address but overflows."""
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # one trailing dot
    # The URL Standard: a host whose last label is a number is an IPv4 address.
    last = _ipv4_number(parts[-1]) if parts[-1] else None
    if last is None:
        return None
    if len(parts) > 4:
        raise TargetError("Not a valid IPv4 address: more than four parts.")
    numbers = [_ipv4_number(p) for p in parts[:-1]]
    if any(n is None for n in numbers):
        raise TargetError("Not a valid IPv4 address.")
    head = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise TargetError("Not a valid IPv4 address: a part is out of range.")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> Target:
    """The canonical Target for a URL's host (as `urllib.parse` gives it, brackets
    removed for IPv6). Raises TargetError when no resolver could ever reach it."""
    if not host:
        raise TargetError("Must name a host.")
    if ":" in host:  # only an IPv6 literal holds a colon
        if "%" in host:
            raise TargetError("IPv6 zone identifiers are not allowed.")
        try:
            return Target(ip=canonical_ip(ipaddress.IPv6Address(host)))
        except ValueError:
            raise TargetError("Not a valid IPv6 address.") from None
    ipv4 = parse_ipv4(host)
    if ipv4 is not None:
        return Target(ip=ipv4)
    name = host[:-1] if host.endswith(".") else host
    if name.isascii():
        # Letters, digits, hyphens, and underscores, which real host names carry (Docker
        # Compose service names, say) though IDNA refuses them.
        ascii_name = name.lower()
    else:
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise TargetError("The host is not a valid domain name (IDNA).") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_NAME_LENGTH or any(
        not 1 <= len(label) <= MAX_LABEL_LENGTH for label in labels
    ):
        raise TargetError("The host is not a valid domain name: a label is empty or too long.")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise TargetError(f"The host is not a valid domain name: bad label {label[:63]!r}.")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                raise TargetError("The host is not a valid domain name (IDNA).") from None
    return Target(name=ascii_name)


@dataclass(frozen=True)
class Rule:
    """One entry of SCHEDULER_ALLOWED_TARGETS / SCHEDULER_DENIED_TARGETS: a host name, a
    `*.` wildcard (the names under a domain, not the domain itself), an address or a CIDR."""

    text: str
    name: str | None = None
    suffix: str | None = None
    network: IPNetwork | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Raises TargetError naming the entry when it is none of the forms above."""
        entry = text.strip()
        try:
            if entry.startswith("*."):
                target = parse_host(entry[2:])
                if target.name is None:
                    raise TargetError("a wildcard needs a domain name")
                return cls(entry, suffix="." + target.name)
            if "/" in entry:
                network = ipaddress.ip_network(entry.strip("[]"), strict=False)
                return cls(entry, network=_canonical_network(network))
            target = parse_host(entry.strip("[]"))
        except (TargetError, ValueError) as exc:
            raise TargetError(f"target rule {entry!r} is not valid: {exc}") from None
        if target.ip is not None:
            return cls(entry, network=ipaddress.ip_network(target.ip))
        return cls(entry, name=target.name)

    def matches_name(self, name: str) -> bool:
        return name == self.name or (self.suffix is not None and name.endswith(self.suffix))

    def matches_ip(self, ip: IPAddress) -> bool:
        return (
            self.network is not None and ip.version == self.network.version and (ip in self.network)
        )


def _canonical_network(network: IPNetwork) -> IPNetwork:
    """An IPv6 range inside the IPv4-mapped or NAT64 prefixes as the IPv4 range it
    carries, since addresses are compared in their canonical (IPv4) form."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        for prefix in (ipaddress.IPv6Network("::ffff:0:0/96"), ipaddress.IPv6Network(_NAT64)):
            if network.subnet_of(prefix):
                base = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
                return ipaddress.ip_network(f"{base}/{network.prefixlen - 96}")
    return network


def parse_rules(value: str | None) -> tuple[Rule, ...]:
    """Rules from a setting: entries separated by commas and/or whitespace."""
    return tuple(Rule.parse(entry) for entry in re.split(r"[\s,]+", value or "") if entry)


@dataclass(frozen=True)
class TargetPolicy:
    """`allowed` None: every target not denied may be called."""

    allowed: tuple[Rule, ...] | None = None
    denied: tuple[Rule, ...] = ()

    @classmethod
    def from_settings(cls, allowed: str | None, denied: str | None) -> TargetPolicy:
        """Raises TargetError for a bad rule, and for an allow-list that is set but holds
        no rule (`","`): read as "anything goes", it would silently open every target."""
        rules = parse_rules(allowed)
        if allowed and not rules:  # set, but nothing in it
            raise TargetError("SCHEDULER_ALLOWED_TARGETS is set but holds no rule")
        return cls(allowed=rules or None, denied=parse_rules(denied))

    def refusal_for_name(self, name: str) -> str | None:
        """Why a host name may not be called, judged by the name alone, or None."""
        if name in ALWAYS_DENIED_NAMES:
            return f"{name} is a cloud metadata service, which is never called."
        for rule in self.denied:
            if rule.matches_name(name):
                return f"{name} is denied by SCHEDULER_DENIED_TARGETS ({rule.text})."
        if (
            self.allowed is not None
            and not any(r.matches_name(name) for r in self.allowed)
            # with ranges listed, the name's addresses decide, at delivery
            and not any(r.network is not None for r in self.allowed)
        ):
            return f"{name} is not in SCHEDULER_ALLOWED_TARGETS."
        return None

    def refusal_for_ip(self, ip: IPAddress, name: str | None = None) -> str | None:
        """Why address `ip` (that `name` resolved to, if any) may not be called, or None."""
        ip = canonical_ip(ip)
        shown = f"{name} ({ip})" if name else str(ip)
        for network in ALWAYS_DENIED_NETWORKS:
            if ip.version == network.version and ip in network:
                return (
                    f"{shown} is a link-local, unspecified or cloud metadata address: never called."
                )
        for rule in self.denied:
            if rule.matches_ip(ip):
                return f"{shown} is denied by SCHEDULER_DENIED_TARGETS ({rule.text})."
        if self.allowed is not None:
            by_name = name is not None and any(r.matches_name(name) for r in self.allowed)
            if not by_name and not any(r.matches_ip(ip) for r in self.allowed):
                return f"{shown} is not in SCHEDULER_ALLOWED_TARGETS."
        return None

    def refusal_at_enqueue(self, target: Target) -> str | None:
        """Why `target` is refused before any lookup (an address, or a name by its
        name), or None; a name is checked again against its addresses at delivery."""
        if target.ip is not None:
            return self.refusal_for_ip(target.ip)
        assert target.name is not None
        return self.refusal_for_name(target.name)

    def refusal_at_delivery(self, target: Target, addresses: Iterable[IPAddress]) -> str | None:
        """Why the callback may not go to these resolved addresses (all must pass)."""
        if target.name is not None:
            reason = self.refusal_for_name(target.name)
            if reason:
                return reason
        for ip in addresses:
            reason = self.refusal_for_ip(ip, target.name)
            if reason:
                return reason
        return None


# Special-use names that always mean this host (RFC 6761 section 6.3): judged as loopback
# at enqueue, before any lookup.
_LOOPBACK_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


# The process's policy: set once at start from its settings (PluginManager does), read
# by the enqueue check and by every transport at connect time.
_current = TargetPolicy()


def set_policy(policy: TargetPolicy) -> None:
    global _current
    _current = policy


def current_policy() -> TargetPolicy:
    return _current


def refusal_at_enqueue(host: str, policy: TargetPolicy | None = None) -> str | None:
    """Why a URL's host (brackets removed) is refused at enqueue, or None: a host no
    resolver could reach, or one the policy refuses by its address or its name."""
    policy = policy or _current
    try:
        target = parse_host(host)
    except TargetError as exc:
        return str(exc)
    if target.name is not None and _is_localhost(target.name):
        return policy.refusal_at_delivery(target, _LOOPBACK_ADDRESSES)
    return policy.refusal_at_enqueue(target)


def refusal_at_connect(host: str, addresses: Iterable[str]) -> str | None:
    """Why a transport must not connect to `host` at these resolved `addresses` (IP
    strings, as getaddrinfo gives them), by the process's policy; None: go ahead, to
    these addresses and no others."""
    try:
        target = parse_host(host.strip("[]"))
        ips = [ipaddress.ip_address(address) for address in addresses]
    except (TargetError, ValueError) as exc:
        return str(exc)
    return _current.refusal_at_delivery(target, ips)
