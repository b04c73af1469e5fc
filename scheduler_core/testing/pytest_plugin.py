"""pytest fixtures for plugin authors. Load them from your top-level ``conftest.py``::

    pytest_plugins = ["scheduler_core.testing.pytest_plugin"]

(or ``pytest -p scheduler_core.testing.pytest_plugin``). They are opt-in, not a
``pytest11`` entry point, so installing scheduler-core adds no fixtures to test suites
that did not ask for them.

- ``scheduler_plugins``: the plugin objects or modules under test; override it (default:
  none, the built-ins alone).
- ``scheduler_settings``: `Settings` fields for the scheduler, e.g.
  ``{"signing_secrets": ("whsec_...",)}``; override it (default: none).
- ``scheduler``: a `scheduler_core.testing.Scheduler` with those plugins and settings,
  closed after the test.
- ``receiver``: a `scheduler_core.testing.Receiver` on 127.0.0.1, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scheduler_core.testing.harness import Scheduler
from scheduler_core.testing.receiver import Receiver


@pytest.fixture
def scheduler_plugins() -> list[object]:
    """The plugins the ``scheduler`` fixture registers after the built-ins."""
    return []


@pytest.fixture
def scheduler_settings() -> dict[str, Any]:
    """Keyword arguments for `Scheduler`: Settings fields, ``database_url``,
    ``load_entry_points``."""
    return {}


@pytest.fixture
def scheduler(
    scheduler_plugins: list[object], scheduler_settings: dict[str, Any]
) -> Iterator[Scheduler]:
    """A scheduler with the plugins under test; deliver with ``tick()``/``deliver_due()``."""
    with Scheduler(*scheduler_plugins, **scheduler_settings) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP receiver on 127.0.0.1 recording every callback."""
    with Receiver() as running:
        yield running
