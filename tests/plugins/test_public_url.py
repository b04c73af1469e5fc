"""SCHEDULER_PUBLIC_URL: the base of the completion URLs every callback carries."""

from __future__ import annotations

import pytest

from scheduler_core.settings import Settings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"SCHEDULER_HOST": "0.0.0.0", "SCHEDULER_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"SCHEDULER_HOST": "sched.internal"}, "http://sched.internal:8080"),
        ({"SCHEDULER_HOST": "::1", "SCHEDULER_PORT": "81"}, "http://[::1]:81"),
        (
            {"SCHEDULER_PUBLIC_URL": "https://sched.example.com/base/"},
            "https://sched.example.com/base",
        ),
    ],
)
def test_public_url_is_read_or_derived(monkeypatch, env, expected):
    for name in ("SCHEDULER_PUBLIC_URL", "SCHEDULER_HOST", "SCHEDULER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env().public_url == expected


@pytest.mark.parametrize("value", ["ftp://x", "sched.example.com", "https://x/?a=1", "https://"])
def test_a_public_url_that_cannot_be_a_base_refuses_to_start(monkeypatch, value):
    monkeypatch.setenv("SCHEDULER_PUBLIC_URL", value)
    with pytest.raises(ValueError, match="SCHEDULER_PUBLIC_URL"):
        Settings.from_env()
