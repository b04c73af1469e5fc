"""Wait for a condition with a deadline instead of sleeping a fixed time.

The helper ships in the package for plugin authors; the suite imports it from here.
"""

from scheduler_core.testing.waiting import wait_until

__all__ = ["wait_until"]
