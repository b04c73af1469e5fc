"""The target policy's reading of hosts: every spelling of an address is that address,
names that cannot resolve are refused, and the rules hold for names and addresses."""

from __future__ import annotations

import ipaddress

import pytest

from scheduler_core.targets import TargetError, TargetPolicy, parse_host

METADATA_SPELLINGS = [
    "169.254.169.254",
    "169.254.169.254.",
    "2852039166",
    "0xa9fea9fe",
    "0XA9FEA9FE",
    "0251.0376.0251.0376",
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",
    "169.16689662",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "::169.254.169.254",
]


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_every_spelling_of_the_metadata_address_is_that_address_and_refused(host: str) -> None:
    target = parse_host(host)
    assert target.ip == ipaddress.ip_address("169.254.169.254")
    reason = TargetPolicy().refusal_at_enqueue(target)
    assert reason is not None and "metadata" in reason


@pytest.mark.parametrize(
    "host,expected",
    [
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("::1", "::1"),
        ("fe80::1", "fe80::1"),
    ],
)
def test_short_and_numeric_forms_are_read_as_the_url_standard_reads_them(
    host: str, expected: str
) -> None:
    assert parse_host(host).ip == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "1.2.3.4.5",
        "1..2.3",
        "256.1.1.1",
        "1.2.3.256",
        "4294967296",
        "example.123",
        "a..b",
        "-a.com",
        "a-.com",
        "xn--zz.com",
        "x" * 64 + ".com",
        "ex ample.com",
        "fe80::1%eth0",
        "1:2:3",
        ".".join(["a" * 60] * 5),
    ],
)
def test_hosts_that_can_never_resolve_are_refused(host: str) -> None:
    with pytest.raises(TargetError):
        parse_host(host)


def test_names_are_canonical() -> None:
    assert parse_host("Bücher.Example.").name == "xn--bcher-kva.example"
    assert parse_host("API.Example.COM.").name == "api.example.com"
    assert parse_host("web_1").name == "web_1"  # Compose service names carry underscores


def test_link_local_and_metadata_are_refused_whatever_the_settings() -> None:
    open_policy = TargetPolicy.from_settings("0.0.0.0/0 ::/0", None)
    for host in ("169.254.1.1", "fe80::abcd", "fd00:ec2::254", "metadata.google.internal"):
        assert open_policy.refusal_at_enqueue(parse_host(host)) is not None


def test_denied_targets_close_hosts_wildcards_and_ranges() -> None:
    policy = TargetPolicy.from_settings(None, "127.0.0.0/8, ::1 *.internal.example bad.example")
    refused = [
        "127.0.0.1",
        "127.1",
        "::ffff:127.0.0.1",
        "::1",
        "db.internal.example",
        "bad.example",
    ]
    allowed = ["internal.example", "good.example", "10.0.0.1", "BAD.example.org"]
    for host in refused:
        assert policy.refusal_at_enqueue(parse_host(host)), host
    for host in allowed:
        assert policy.refusal_at_enqueue(parse_host(host)) is None, host


def test_allowed_targets_admit_only_what_they_list() -> None:
    names_only = TargetPolicy.from_settings("*.example.com api.partner.org", None)
    assert names_only.refusal_at_enqueue(parse_host("hooks.example.com")) is None
    assert names_only.refusal_at_enqueue(parse_host("api.partner.org")) is None
    assert names_only.refusal_at_enqueue(parse_host("example.com")) is not None
    assert names_only.refusal_at_enqueue(parse_host("other.org")) is not None
    assert names_only.refusal_at_enqueue(parse_host("10.0.0.1")) is not None
    with_range = TargetPolicy.from_settings("10.0.0.0/8", None)
    # A name is judged by its addresses at delivery when the list holds ranges.
    name = parse_host("svc.local")
    assert with_range.refusal_at_enqueue(name) is None
    assert with_range.refusal_at_delivery(name, [ipaddress.ip_address("10.1.2.3")]) is None
    assert with_range.refusal_at_delivery(
        name, [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("192.168.0.1")]
    )


def test_a_name_resolving_to_a_forbidden_address_is_refused_at_delivery() -> None:
    # DNS rebinding: the name passed at enqueue; its address today is metadata or denied.
    policy = TargetPolicy.from_settings(None, "127.0.0.0/8")
    target = parse_host("rebind.example")
    assert policy.refusal_at_enqueue(target) is None
    for address in ("169.254.169.254", "127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"):
        assert policy.refusal_at_delivery(target, [ipaddress.ip_address(address)]), address


@pytest.mark.parametrize("rule", ["*.", "*.1.2.3.4", "10.0.0.0/33", "exa%mple.com", "a..b"])
def test_a_bad_rule_is_an_error_naming_it(rule: str) -> None:
    with pytest.raises(TargetError, match="target rule"):
        TargetPolicy.from_settings(rule, None)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "0", "0x0", "00000", "0.1.2.3", "::", "::ffff:0.0.0.0", "::0.0.0.0"]
)
def test_the_unspecified_address_is_never_called(host: str) -> None:
    # On Linux a connection to 0.0.0.0 or :: reaches this very host.
    assert TargetPolicy().refusal_at_enqueue(parse_host(host)) is not None


def test_ipv4_mapped_and_nat64_ranges_are_read_as_the_ipv4_ranges_they_carry() -> None:
    policy = TargetPolicy.from_settings(None, "::ffff:127.0.0.1/128 ::ffff:10.0.0.0/104")
    for host in ("127.0.0.1", "::ffff:127.0.0.1", "10.9.8.7", "64:ff9b::a09:807"):
        assert policy.refusal_at_enqueue(parse_host(host)), host
    assert policy.refusal_at_enqueue(parse_host("11.0.0.1")) is None


@pytest.mark.parametrize("value", [",", " ", " , ,"])
def test_an_allow_list_holding_no_rule_is_an_error_not_an_open_door(value: str) -> None:
    with pytest.raises(TargetError, match="holds no rule"):
        TargetPolicy.from_settings(value, None)
