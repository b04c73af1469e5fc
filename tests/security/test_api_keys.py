"""SCHEDULER_API_KEYS: a value with no usable key refuses to start rather than leave the
API open, and a presented key is compared with every key in constant time."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from plugins import api_key_auth
from scheduler_core.settings import Settings
from tests.support.processes import run_cli


@pytest.mark.parametrize("value", [",", " ", ", ,", "\t", " , \n"])
def test_a_value_with_no_usable_key_refuses_to_start(tmp_path: Path, value: str) -> None:
    result = run_cli(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "serve",
        "--port",
        "0",
        env={"SCHEDULER_API_KEYS": value},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: SCHEDULER_API_KEYS is set but holds no key; list keys separated by commas, "
        "or unset it for an open API"
    ]
    assert "listening" not in result.stdout + result.stderr


def test_a_key_an_authorization_header_cannot_carry_refuses_to_start(tmp_path: Path) -> None:
    result = run_cli(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "serve",
        "--port",
        "0",
        env={"SCHEDULER_API_KEYS": "good-key,clé-secrète"},
    )
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "SCHEDULER_API_KEYS: key 2" in line
    assert "secrète" not in line  # the key itself is never shown


def test_keys_are_trimmed_and_empty_items_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_API_KEYS", " k1 ,, k2,")
    assert Settings.from_env().api_keys == ("k1", "k2")
    monkeypatch.setenv("SCHEDULER_API_KEYS", "")  # set but empty: unset, the API is open
    assert Settings.from_env().api_keys == ()


@pytest.mark.parametrize("presented", ["key-number-one", "key-2", "x", "a" * 5000, "wrong"])
def test_every_key_is_compared_with_inputs_of_one_length(
    monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    """Whatever is presented (a key, a short or long guess), the same comparisons run:
    one per configured key, each on two inputs of the same length, so the time taken tells
    neither which key matched nor how long the keys are."""
    keys = ("key-number-one", "key-2", "a-third-and-longer-key")
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(api_key_auth.hmac, "compare_digest", spy)
    settings = Settings(api_keys=keys, load_entry_points=False)
    app = Flask(__name__)
    with app.test_request_context(headers={"Authorization": f"Bearer {presented}"}):
        allowed = api_key_auth.scheduler_authorize(request=request, settings=settings)
    assert allowed is (presented in keys)
    assert len(calls) == len(keys)
    assert len(set(calls)) == 1 and calls[0][0] == calls[0][1]
