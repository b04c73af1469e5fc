"""scheduler-core: a self-hosted HTTP callback scheduler."""

from importlib.metadata import PackageNotFoundError, version

from scheduler_core.hookspecs import hookimpl

try:
    __version__ = version("scheduler-core")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]
