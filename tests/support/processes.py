"""Real `scheduler` subprocesses for CLI, shutdown and multi-process tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.waiting import wait_until

LISTENING = re.compile(r"listening on http://([^:\s]+):(\d+)")


class SchedulerProcess:
    """`scheduler <args>` with its stderr collected line by line."""

    def __init__(self, args: list[str], database_url: str, env: dict[str, str] | None = None):
        full_env = {
            **os.environ,
            "SCHEDULER_DATABASE_URL": database_url,
            "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1",
            **(env or {}),
        }
        self.log_path = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler_core.cli", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        self.base_url: str | None = None

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None and not regex.search(self.output):
                raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.output}")
            return regex.search(self.output)

        return wait_until(found, timeout, message=f"for log {pattern!r}")

    def wait_listening(self, timeout: float = 20.0) -> str:
        match = self.wait_for_log(LISTENING.pattern, timeout)
        self.base_url = f"http://{match.group(1)}:{match.group(2)}"
        return self.base_url

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def start_server(
    database_url: str, *extra: str, env: dict[str, str] | None = None
) -> SchedulerProcess:
    process = SchedulerProcess(["serve", "--port", "0", *extra], database_url, env)
    process.wait_listening()
    return process


def run_cli(
    database_url: str | None,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})}
    if database_url is not None:
        full_env["SCHEDULER_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "scheduler_core.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
    )
