"""The scheduler_core.testing fixtures, with this plugin loaded and a box folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import scheduler_core_example

pytest_plugins = ["scheduler_core.testing.pytest_plugin"]


@pytest.fixture
def scheduler_plugins() -> list[object]:
    """The plugin under test, registered after the built-ins (as an installed one is)."""
    return [scheduler_core_example]


@pytest.fixture
def boxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SCHEDULER_EXAMPLE_DIR, an empty folder for this test."""
    folder = tmp_path / "boxes"
    folder.mkdir()
    monkeypatch.setenv("SCHEDULER_EXAMPLE_DIR", str(folder))
    return folder
