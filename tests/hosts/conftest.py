"""Fixtures of the host backpressure tests: real `scheduler` subprocesses (tests/cli)."""

from tests.cli.conftest import processes

__all__ = ["processes"]
