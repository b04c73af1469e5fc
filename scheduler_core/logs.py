"""Logging: one line per event on stderr. Secrets are never passed to a logger."""

from __future__ import annotations

import logging
import sys
from urllib.parse import urlsplit

from scheduler_core.redaction import scrub

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """Keeps a traceback on its event's line, so one event is always one line; and takes
    out of every line the credentials a URL may carry (userinfo, query values), whichever
    library logged it or raised the error quoted."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record)).replace("\n", " | ")


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO; the dispatcher logs what matters itself.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # urllib3 logs every callback's request line, query string and all, at DEBUG; the
    # delivery log says what matters (the formatter would scrub the query, too).
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def loggable_url(url: str) -> str:
    """`url` without userinfo, query or fragment, any of which may carry credentials."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable url>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
