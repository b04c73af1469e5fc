"""The typing kit: mypy types a plugin's imports of scheduler_core, built-in plugins and
migrations included, from a checkout (the repo's mypy config) and as installed (py.typed).

These run mypy as plugin authors do. The wheel's side is in test_packaging.py (it needs a
built wheel); here the checkout's, which is what `mypy` in this repo and `MYPYPATH`
pointed at a checkout see.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extra")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "contrib" / "scheduler-core-example"

# A plugin as an author writes it, every import one a plugin would make.
PROBE = """\
from __future__ import annotations

from scheduler_core import hookimpl, hookspecs
from scheduler_core.migrations import load
from scheduler_core.models import Callback, DeliveryReport
from scheduler_core.plugins import http_delivery
from scheduler_core.plugins.backoff_retry import backoff_ms


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    return ["probe"]


@hookimpl
def scheduler_deliver(callback: Callback, deadline: float) -> DeliveryReport | None:
    if callback.url.startswith("probe:"):
        return DeliveryReport.accepted()
    return http_delivery.scheduler_deliver(callback=callback, deadline=deadline)


reveal_type(http_delivery.scheduler_deliver)
reveal_type(http_delivery.SCHEMES)
reveal_type(backoff_ms)
reveal_type(load)
reveal_type(hookspecs.scheduler_deliver)
reveal_type(hookimpl)
"""
REVEALED = re.compile(r'^.*:(\d+): note: Revealed type is "(.*)"$', re.MULTILINE)
# --strict, plus: any expression typed Any is an error, so an import mypy could not follow
# (which it would otherwise type as Any) fails the check rather than passing silently.
STRICT = ["--strict", "--disallow-any-expr", "--disallow-any-unimported"]


def mypy(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def revealed_types(output: str) -> list[str]:
    return [match.group(2) for match in REVEALED.finditer(output)]


def assert_probe_is_fully_typed(result: subprocess.CompletedProcess[str]) -> None:
    """What `PROBE` must come to: no error, and every revealed type a real one."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error:" not in output, output
    types = revealed_types(output)
    assert len(types) == PROBE.count("reveal_type("), output
    deliver, schemes, backoff, load, spec, marker = types
    for revealed in types:
        assert "Any" not in revealed, output
    assert "scheduler_core.models.Callback" in deliver
    assert "scheduler_core.models.DeliveryReport" in deliver
    assert schemes == "tuple[str, str]"
    assert backoff.endswith("-> int")
    assert load == "def (dialect: str) -> list[scheduler_core.migrations.Migration]"
    assert "scheduler_core.models.ClaimedTask" in spec
    assert marker == "pluggy._decorators.HookimplMarker"


def test_mypy_in_the_repo_types_the_builtin_plugins_and_migrations(tmp_path: Path) -> None:
    probe = tmp_path / "probe_plugin.py"
    probe.write_text(PROBE)

    # The repo's own config (its mypy_path), strict on the probe only: the core's modules
    # are followed silently, as a third-party package's are.
    result = mypy(
        "--config-file",
        REPO / "pyproject.toml",
        "--cache-dir",
        tmp_path / "cache",
        "--follow-imports=silent",
        *STRICT,
        probe,
        cwd=REPO,
    )

    assert_probe_is_fully_typed(result)


def test_without_the_typecheck_view_the_plugins_are_not_found(tmp_path: Path) -> None:
    # The control: with no mapping, mypy does not find scheduler_core.plugins, and the
    # check above would fail loudly rather than see Any.
    probe = tmp_path / "probe_plugin.py"
    probe.write_text("from scheduler_core.plugins import http_delivery\n")
    isolated = tmp_path / "mypy.ini"
    isolated.write_text("[mypy]\n")

    result = mypy(
        "--config-file",
        isolated,
        "--cache-dir",
        tmp_path / "cache",
        "--follow-imports=silent",
        *STRICT,
        probe,
        cwd=REPO,
    )

    assert result.returncode != 0
    assert (
        'Cannot find implementation or library stub for module named "scheduler_core.plugins'
        in (result.stdout)
    )


def test_the_core_package_is_marked_typed_and_the_marker_is_packaged() -> None:
    assert (REPO / "scheduler_core" / "py.typed").is_file()
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["scheduler_core"]
    # No global escape hatch: an import mypy cannot resolve is an error, not Any.
    assert "ignore_missing_imports" not in config["tool"]["mypy"]


@pytest.mark.slow  # it follows pytest's and Flask's types: several seconds
def test_the_example_plugin_and_its_tests_pass_mypy_strict_against_the_checkout(
    tmp_path: Path,
) -> None:
    # As its README says: from its own folder (its [tool.mypy] is strict), MYPYPATH at
    # the checkout and its typecheck/ view.
    env = {
        **os.environ,
        "MYPYPATH": os.pathsep.join([str(REPO), str(REPO / "tests" / "typecheck")]),
    }

    result = mypy(
        "--cache-dir",
        tmp_path / "cache",
        "scheduler_core_example",
        *sorted((EXAMPLE / "tests").glob("*.py")),
        cwd=EXAMPLE,
        env=env,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 3 source files" in result.stdout
