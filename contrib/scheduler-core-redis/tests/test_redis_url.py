"""Reading a redis:// URL: what it targets, and what it gets wrong, said without quoting
its secrets."""

from __future__ import annotations

import pytest

from scheduler_core_redis import InvalidRedisURL, parse_target


def test_a_stream_url_with_everything():
    target = parse_target(
        "rediss://alice:p%40ss@Cache.Example.COM:6380/3?stream=jobs%3Ain&maxlen=1000"
    )
    assert target.tls
    assert (target.host, target.port, target.db) == ("cache.example.com", 6380, 3)
    assert (target.username, target.password) == ("alice", "p@ss")
    assert (target.stream, target.channel, target.maxlen) == ("jobs:in", None, 1000)
    assert "p@ss" not in repr(target) and "alice" not in repr(target)


def test_defaults_port_6379_db_0_no_credentials():
    target = parse_target("redis://127.0.0.1?stream=s")
    assert (target.tls, target.port, target.db, target.username, target.password) == (
        False,
        6379,
        0,
        None,
        None,
    )
    assert parse_target("redis://127.0.0.1:6379/?stream=s").db == 0


def test_a_password_alone_and_an_ipv6_host():
    target = parse_target("redis://:secret@[::1]:7000/1?channel=events&require_subscribers=1")
    assert (target.host, target.port, target.db) == ("::1", 7000, 1)
    assert (target.username, target.password) == (None, "secret")
    assert (target.channel, target.require_subscribers) == ("events", True)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/0", "exactly one of ?stream=NAME and ?channel=NAME"),
        ("redis://127.0.0.1/0?stream=a&channel=b", "exactly one of"),
        ("redis://127.0.0.1/0?stream=", "must not be empty"),
        ("redis://127.0.0.1/0?steam=a", "unknown query parameter(s): steam"),
        ("redis://127.0.0.1/0?stream=a&stream=b", "given twice"),
        ("redis://127.0.0.1/0?stream=a&tokenvalue", "needs a value"),
        ("redis://127.0.0.1/db1?stream=a", "database number"),
        ("redis://127.0.0.1/0/extra?stream=a", "database number"),
        ("redis://127.0.0.1/0?stream=a&maxlen=-5", "whole number"),
        ("redis://127.0.0.1/0?stream=a&maxlen=0", "at least 1"),
        ("redis://127.0.0.1/0?channel=a&maxlen=5", "stream only"),
        ("redis://127.0.0.1/0?stream=a&require_subscribers=1", "channel only"),
        ("redis://127.0.0.1/0?channel=a&require_subscribers=maybe", "1 or 0"),
        ("redis://127.0.0.1:0/0?stream=a", "port 0"),
        ("redis://127.0.0.1:99999/0?stream=a", "not a valid URL"),
        ("redis://alice@127.0.0.1/0?stream=a", "needs a password"),
        ("redis://127.0.0.1/0?stream=a#frag", "fragment"),
        ("http://127.0.0.1/0?stream=a", "redis or rediss"),
    ],
)
def test_what_is_wrong_is_said(url: str, says: str):
    with pytest.raises(InvalidRedisURL) as caught:
        parse_target(url)
    assert says in str(caught.value)


def test_messages_quote_no_value_and_no_credential():
    for url in (
        "redis://usr:hunter2-secret@127.0.0.1/0?stream=a&channel=sekrit-name",
        "redis://usr:hunter2-secret@127.0.0.1/0?sekrit-token",
        "redis://usr:hunter2-secret@127.0.0.1/zz?stream=sekrit-name",
    ):
        with pytest.raises(InvalidRedisURL) as caught:
            parse_target(url)
        message = str(caught.value)
        assert "hunter2" not in message and "sekrit" not in message and "usr" not in message


def test_connections_are_pooled_by_server_db_and_credentials():
    base = parse_target("redis://u:pw1@h:1/0?stream=a")
    assert base.pool_key == parse_target("redis://u:pw1@h:1/0?channel=b").pool_key
    for other in (
        "redis://u:pw2@h:1/0?stream=a",  # another password: never an authenticated reuse
        "redis://v:pw1@h:1/0?stream=a",
        "redis://u:pw1@h:1/1?stream=a",
        "redis://u:pw1@h:2/0?stream=a",
        "rediss://u:pw1@h:1/0?stream=a",
        "redis://:pw1@h:1/0?stream=a",
    ):
        assert parse_target(other).pool_key != base.pool_key, other
    assert "pw1" not in repr(base.pool_key)
