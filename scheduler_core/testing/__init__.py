"""A kit for testing scheduler-core plugins: a scheduler in the test's process with your
plugin loaded, and a real HTTP receiver.

- `Scheduler(*plugins, **settings)`: the API (Flask test client), a fresh SQLite
  database in a temporary folder, the built-in plugins plus yours, and a dispatcher that
  delivers only when told (`tick()`, `deliver_due()`). Helpers go through the public API:
  `enqueue`, `enqueue_many`, `task`, `attempts`, `loaded_plugins`, `configure`.
- `Receiver`: an HTTP server on 127.0.0.1 that records every request (`calls`,
  `wait_for`) and answers as told (`behave`).
- `RequestFailed`: what a helper raises when the API refuses (an AssertionError).
- `wait_until(predicate, timeout)`: poll instead of sleeping.

With pytest, load the fixtures ``scheduler``, ``receiver``, ``scheduler_plugins`` and
``scheduler_settings`` from your top-level ``conftest.py``::

    pytest_plugins = ["scheduler_core.testing.pytest_plugin"]

    @pytest.fixture
    def scheduler_plugins():
        return [my_plugin_module]

Nothing here runs in production; importing it does not import pytest.
"""

from scheduler_core.testing.harness import RequestFailed, Scheduler
from scheduler_core.testing.receiver import Behaviour, Received, Receiver
from scheduler_core.testing.waiting import wait_until

__all__ = ["Behaviour", "Received", "Receiver", "RequestFailed", "Scheduler", "wait_until"]
