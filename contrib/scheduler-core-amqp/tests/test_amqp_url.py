"""Reading amqp:// and amqps:// URLs (no broker needed)."""

from __future__ import annotations

import pytest

from scheduler_core_amqp.delivery import scrub
from scheduler_core_amqp.url import InvalidURL, parse


def test_a_full_url() -> None:
    endpoint = parse(
        "amqp://us%40er:p%3Ass@Broker.Example:5673/my%2Fvhost?exchange=ex&routing_key=a.b+c"
    )
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("amqp", "broker.example", 5673)
    assert (endpoint.username, endpoint.password) == ("us@er", "p:ss")
    assert endpoint.vhost == "my/vhost"
    assert (endpoint.exchange, endpoint.routing_key) == ("ex", "a.b+c")  # '+' stays a plus
    assert not endpoint.tls


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://h", "/"),
        ("amqp://h/", "/"),
        ("amqp://h/%2F", "/"),
        ("amqp://h/prod", "prod"),
        ("amqp://h/caf%C3%A9", "café"),
    ],
)
def test_the_vhost_is_the_decoded_path_segment_default_slash(url: str, vhost: str) -> None:
    assert parse(url).vhost == vhost


def test_defaults() -> None:
    plain, tls = parse("amqp://h?routing_key=q"), parse("AMQPS://h/?routing_key=q")
    assert (plain.port, tls.port, tls.scheme, tls.tls) == (5672, 5671, "amqps", True)
    assert (plain.username, plain.password) == ("guest", "guest")
    assert (plain.exchange, plain.routing_key) == ("", "q")  # the default exchange: a queue
    assert parse("amqp://h").routing_key == ""


def test_ipv6_literal() -> None:
    endpoint = parse("amqp://[::1]:5999/")
    assert (endpoint.host, endpoint.port) == ("::1", 5999)


def test_user_without_password() -> None:
    endpoint = parse("amqp://alice@h/")
    assert (endpoint.username, endpoint.password) == ("alice", "")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h/", "scheme"),
        ("amqp:///vhost", "no host"),
        ("amqp://h:99999/", "port"),
        ("amqp://h/a/b", "one path segment"),
        ("amqp://h/?routingkey=q", "unknown query parameter 'routingkey'"),
        ("amqp://h/?routing_key=a&routing_key=b", "given twice"),
        ("amqp://h/?routing_key=a.#", "fragment"),
        (f"amqp://h/?exchange={'x' * 256}", "longer than 255 bytes"),
    ],
)
def test_urls_that_cannot_be_published_to(url: str, problem: str) -> None:
    with pytest.raises(InvalidURL, match=problem):
        parse(url)


def test_an_error_never_quotes_the_url() -> None:
    with pytest.raises(InvalidURL) as caught:
        parse("amqp://user:hunter22@h/a/b")
    assert "hunter22" not in str(caught.value)
    assert "user" not in str(caught.value)


def test_the_credentials_in_every_spelling_are_secrets() -> None:
    endpoint = parse("amqp://al%69ce:p%40ss%3Aword@h/")
    secrets = endpoint.secrets()
    for spelling in ("alice", "al%69ce", "p@ss:word", "p%40ss%3Aword"):
        assert spelling in secrets
    text = "login of AlIcE with p@ss:word / p%40ss%3Aword refused"
    assert scrub(text, secrets) == "login of [redacted] with [redacted] / [redacted] refused"


def test_the_key_of_kept_connections_leaves_out_exchange_and_routing_key() -> None:
    one = parse("amqp://u:p@h/v?exchange=a&routing_key=1")
    other = parse("amqp://u:p@h/v?exchange=b&routing_key=2")
    assert one.broker_key == other.broker_key
    assert parse("amqp://u:q@h/v").broker_key != one.broker_key


def test_repr_shows_no_credentials() -> None:
    endpoint = parse("amqp://user1:hunter22@h/")
    assert "hunter22" not in repr(endpoint)
    assert "user1" not in repr(endpoint)
