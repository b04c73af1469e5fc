"""A database URL that cannot be read stops `serve`, `worker` and `migrate` with one line
that says what is wrong and never shows the password."""

from __future__ import annotations

import pytest

from tests.support.processes import run_cli

PASSWORD = "pw-Hunter2-9c1e"

MALFORMED = {
    # A space in the password, a port that is no number.
    "bad-port": f"postgresql://user:{PASSWORD[:5]} {PASSWORD[5:]}@127.0.0.1:notaport/db",
    # An IPv6 literal that never closes: libpq quotes the whole URL in its error.
    "open-bracket": f"postgresql://u:{PASSWORD}@[::1",
    # A stray % in the password: libpq quotes the token it could not decode.
    "bad-escape": f"postgresql://u:{PASSWORD}%zz@127.0.0.1:5432/db",
    # The password as a query parameter, badly escaped.
    "query-password": f"postgresql://127.0.0.1:5432/db?password={PASSWORD}%zz",
    "port-out-of-range": f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db",
    "bad-sqlite": f"sqlite://u:{PASSWORD}@host/x.db",
}

COMMANDS = {"serve": ["serve", "--port", "0"], "worker": ["worker"], "migrate": ["migrate"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("url", list(MALFORMED))
def test_a_malformed_database_url_is_one_line_without_the_password(url, command):
    result = run_cli(MALFORMED[url], *COMMANDS[command], timeout=30)

    assert result.returncode == 1
    output = result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in output
    for piece in (PASSWORD, PASSWORD[:5], PASSWORD[5:], "Hunter2"):
        assert piece not in output


def test_the_error_still_says_what_is_wrong():
    result = run_cli(MALFORMED["bad-port"], "migrate")
    assert '"notaport"' in result.stderr  # not a secret: libpq's reason stays
    result = run_cli(MALFORMED["open-bracket"], "migrate")
    assert result.stderr.startswith("Error: invalid PostgreSQL URL: end of string reached")
