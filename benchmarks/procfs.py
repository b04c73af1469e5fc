"""What /proc says about a process: CPU seconds used so far and peak resident memory.

Linux only. A process that is gone (or unreadable) reads as None: the benchmarks report a
blank rather than fail on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (its threads included, its children not), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM of `pid`: the most resident memory it has used, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class CpuMeter:
    """CPU seconds of some processes over a window: `start()`, then `stop()`. The pids are
    asked for at both ends: a process first seen at `stop()` (a PostgreSQL backend opened
    during the window) counts from 0. `opening`/`closed` are the load generator's names."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids
        self.started_at = 0.0
        self.elapsed_s = 0.0
        self.before: dict[int, float] = {}
        self.used: dict[int, float] = {}

    def start(self) -> None:
        self.before = {pid: s for pid in self._pids() if (s := cpu_seconds(pid)) is not None}
        self.started_at = time.monotonic()

    def stop(self) -> None:
        self.elapsed_s = time.monotonic() - self.started_at
        self.used = {}
        for pid in self._pids():
            now = cpu_seconds(pid)
            if now is not None:
                self.used[pid] = max(0.0, now - self.before.get(pid, 0.0))

    opening = start
    closed = stop

    def seconds(self, pids: Iterable[int]) -> float | None:
        """CPU seconds the given processes used in the window together (None: none read)."""
        values = [self.used[pid] for pid in pids if pid in self.used]
        return sum(values) if values else None

    def percent(self, pids: Iterable[int]) -> float | None:
        """Their CPU over the window, in percent of one core (the machine has os.cpu_count())."""
        used = self.seconds(pids)
        if used is None or self.elapsed_s <= 0:
            return None
        return 100.0 * used / self.elapsed_s
