"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` an enqueue
carries, kept with the task and sent with every callback.

``traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>``, lower case,
neither id all zeros. The specification asks a receiver to ignore a malformed header
(not to refuse the request), so `parse_traceparent` returns None for one, and the task is
stored without trace context. A later version (01..fe) is read by its first four fields,
as the specification says, and kept as version 00, the one this code speaks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
VERSION_00_LENGTH = 55


def parse_traceparent(values: Sequence[str]) -> str | None:
    """The request's `traceparent` (every value of the header, as received) normalised to
    version 00, or None when absent, repeated or malformed."""
    if len(values) != 1:  # two traceparents: no way to tell which is meant
        return None
    value = values[0].strip(" \t")
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    if version == "00" and len(value) != VERSION_00_LENGTH:
        return None
    if version != "00" and len(value) > VERSION_00_LENGTH and value[VERSION_00_LENGTH] != "-":
        return None
    return f"00-{trace_id}-{parent_id}-{flags}"


def trace_ids(traceparent: str) -> tuple[int, int, int]:
    """(trace id, parent span id, flags) of a traceparent `parse_traceparent` returned."""
    _, trace_id, parent_id, flags = traceparent.split("-")
    return int(trace_id, 16), int(parent_id, 16), int(flags, 16)
