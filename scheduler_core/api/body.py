"""Request bodies: JSON whatever the Content-Type, refused cleanly when it is not."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from scheduler_core.api.errors import ApiError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def json_body() -> Any:
    """The parsed body. A browser's fetch sends a string body as text/plain, so the
    Content-Type is not consulted."""
    raw = request.get_data(cache=True)  # over the size limit: werkzeug raises 413
    # Without a Content-Length (chunked), werkzeug cuts the body at the limit instead of
    # refusing it; one byte more in the input means the body was over the limit.
    limit = request.max_content_length
    if (
        request.content_length is None
        and limit is not None
        and len(raw) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise RequestEntityTooLarge()
    if not raw.strip():
        raise ApiError(400, "invalid_json", "The request body is empty; send a JSON document.")
    try:
        text = raw.decode("utf-8-sig")
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        # Lone surrogates (\ud800) parse but cannot be stored or sent as UTF-8. Only an
        # escape can make one (UTF-8 input cannot hold them), so only then look.
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from None
    return value
