"""How a nats:// webhook URL is read, and the entry point that registers the plugin."""

from __future__ import annotations

import importlib.metadata

import pytest

import scheduler_core_nats
from scheduler_core.models import Callback
from scheduler_core_nats.target import InvalidTarget, parse_target


def test_host_port_and_subject() -> None:
    target = parse_target("nats://broker.internal:4333/orders.created")
    assert (target.host, target.port, target.subject) == ("broker.internal", 4333, "orders.created")
    assert target.stream is None
    assert (target.user, target.password, target.token) == (None, None, None)


def test_the_default_port_is_4222() -> None:
    assert parse_target("nats://broker/x").port == 4222


def test_ipv6_literal() -> None:
    target = parse_target("nats://[::1]:4222/x")
    assert target.host == "::1"
    assert target.address == "[::1]:4222"


def test_user_and_password_are_percent_decoded_and_kept_out_of_repr() -> None:
    target = parse_target("nats://sched%40ops:p%3Ass@broker/x")
    assert (target.user, target.password) == ("sched@ops", "p:ss")
    assert "p:ss" not in repr(target) and "sched" not in repr(target)


def test_a_lone_userinfo_is_a_token() -> None:
    target = parse_target("nats://s3cr3t-token@broker/x")
    assert (target.user, target.password, target.token) == (None, None, "s3cr3t-token")


def test_different_credentials_never_share_a_connection() -> None:
    keys = {
        parse_target(url).connection_key
        for url in (
            "nats://broker/x",
            "nats://a:one@broker/x",
            "nats://a:two@broker/x",
            "nats://tok@broker/x",
            "nats://broker:4223/x",
        )
    }
    assert len(keys) == 5
    assert parse_target("nats://a:one@Broker/x").connection_key == (
        parse_target("nats://a:one@broker/y.z").connection_key
    )
    assert "one" not in repr(parse_target("nats://a:one@b/x").connection_key)


def test_stream_parameter() -> None:
    assert parse_target("nats://broker/x?stream=ORDERS").stream == "ORDERS"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nats://broker", "must name a subject"),
        ("nats://broker/", "must name a subject"),
        ("nats://broker/a/b", "one path segment"),
        ("nats://broker/a..b", "empty token"),
        ("nats://broker/.a", "empty token"),
        ("nats://broker/a.", "empty token"),
        ("nats://broker/a.*", "wildcards"),
        ("nats://broker/a.>", "wildcards"),
        ("nats://broker/a%20b", "white space"),
        ("nats://broker/a%0Db", "white space"),
        ("nats://broker/x?stream=A.B", "stream="),
        ("nats://broker/x?stream=A&stream=B", "stream="),
        ("nats://broker/x?strem=A", "unknown query parameter(s): strem"),
        ("nats://broker/x#frag", "fragment"),
        ("nats://broker:99999/x", "not a valid URL"),
        ("http://broker/x", "scheme"),
    ],
)
def test_urls_that_cannot_be_published_to(url: str, reason: str) -> None:
    with pytest.raises(InvalidTarget, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_target(url)


def test_an_invalid_url_is_a_failed_attempt_that_never_quotes_the_url() -> None:
    callback = Callback(url="nats://user:hunter22@broker/a..b", headers={}, body=b"")
    report = scheduler_core_nats.scheduler_deliver(callback, 0.0)
    assert report is not None
    assert report.error == (
        "invalid nats URL: the subject has an empty token (a leading, trailing or double dot)"
    )


def test_other_schemes_are_left_to_other_plugins() -> None:
    callback = Callback(url="https://example.com/hook", headers={}, body=b"")
    assert scheduler_core_nats.scheduler_deliver(callback, 0.0) is None
    assert scheduler_core_nats.scheduler_delivery_schemes() == ["nats"]


def test_the_entry_point_registers_the_plugin() -> None:
    [entry_point] = [
        ep for ep in importlib.metadata.entry_points(group="scheduler_core") if ep.name == "nats"
    ]
    assert entry_point.value == "scheduler_core_nats"
    assert entry_point.load() is scheduler_core_nats
