"""The smallest scheduler-core delivery plugin: ``example://BOX`` webhook URLs.

Each callback becomes one JSON line appended to ``$SCHEDULER_EXAMPLE_DIR/BOX.jsonl``:
``{"url": ..., "headers": {...}, "body": <the callback's JSON envelope>}``. BOX is the
URL's host, 1 to 63 of ``a-z0-9-``; the path and query are ignored. Writing the line is
the "broker's confirm": the attempt succeeded. No directory configured, a bad BOX, a
deadline already past or a failed write are failed attempts; the core retries them as it
retries HTTP failures.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from scheduler_core import hookimpl
from scheduler_core.models import Callback, DeliveryReport

SCHEME = "example"
DIRECTORY_VARIABLE = "SCHEDULER_EXAMPLE_DIR"
BOX = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

# Callbacks are delivered from many threads at once: one line at a time per process.
_write_lock = threading.Lock()


@hookimpl
def scheduler_delivery_schemes() -> list[str]:
    """The API accepts ``example://`` webhook URLs once this plugin is loaded."""
    return [SCHEME]


@hookimpl
def scheduler_deliver(callback: Callback, deadline: float) -> DeliveryReport | None:
    """Append `callback` to its box's file; None for a URL of another scheme, which
    leaves it to the next plugin (the built-in HTTP one for http and https)."""
    url = urlsplit(callback.url)
    if url.scheme.lower() != SCHEME:
        return None
    directory = os.environ.get(DIRECTORY_VARIABLE)
    if not directory:
        return DeliveryReport.failed(f"{DIRECTORY_VARIABLE} is not set")
    box = url.hostname or ""
    if not BOX.fullmatch(box):
        return DeliveryReport.failed("the box must be 1 to 63 of a-z, 0-9 and -")
    if time.monotonic() >= deadline:
        return DeliveryReport.failed("the deadline passed before writing", timed_out=True)
    line = json.dumps(
        {"url": callback.url, "headers": dict(callback.headers), "body": json.loads(callback.body)}
    )
    sent_at = time.monotonic()
    try:
        with _write_lock, (Path(directory) / f"{box}.jsonl").open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError as exc:
        return DeliveryReport.failed(f"cannot write the box: {exc.strerror}", sent_at=sent_at)
    return DeliveryReport.accepted(sent_at=sent_at)
