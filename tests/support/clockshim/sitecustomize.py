"""A stepped host clock, for one process: loaded as `sitecustomize` when this folder is on
PYTHONPATH. The process's wall clock (time.time, time.time_ns, datetime.now, utcnow, today)
is shifted by the seconds written in the file $SCHEDULER_TEST_CLOCK_FILE, read again
whenever the file changes, so a test can step the clock while the process runs. The
monotonic clock, and the database's clock, are left alone: as when ntpd steps a host.
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_PATH = os.environ.get("SCHEDULER_TEST_CLOCK_FILE")

if _PATH:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _real_datetime = _datetime.datetime
    _state: dict[str, float | int | None] = {"stamp": None, "offset": 0.0}

    def _offset() -> float:
        try:
            stamp = os.stat(_PATH).st_mtime_ns
        except OSError:
            return 0.0
        if stamp != _state["stamp"]:
            try:
                with open(_PATH) as file:
                    _state["offset"] = float(file.read().strip() or 0)
            except (OSError, ValueError):
                pass
            _state["stamp"] = stamp
        return float(_state["offset"] or 0.0)

    def _time_shifted() -> float:
        return _real_time() + _offset()

    def _time_ns_shifted() -> int:
        return _real_time_ns() + int(_offset() * 1e9)

    class _SteppedDatetime(_real_datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return _real_datetime.now(tz) + _datetime.timedelta(seconds=_offset())

        @classmethod
        def utcnow(cls):  # type: ignore[no-untyped-def, override]
            return _real_datetime.utcnow() + _datetime.timedelta(seconds=_offset())

        @classmethod
        def today(cls):  # type: ignore[no-untyped-def, override]
            return cls.now()

    _time.time = _time_shifted
    _time.time_ns = _time_ns_shifted
    _datetime.datetime = _SteppedDatetime  # type: ignore[misc]
