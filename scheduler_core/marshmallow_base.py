"""marshmallow pieces shared by the API's schemas and the runtime configuration's (which
the CLI uses too, without the API)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, fields

# RFC 3339 section 5.6 `date-time`: seconds required, any fraction, `Z`/`z` or a numeric
# offset; `T`, `t` or (its section 5.6 note) a space between date and time. ASCII digits
# only. Python's fromisoformat alone reads far more (week dates, basic format, hours
# only) and stops at a NUL, so "...Z\u0000junk" would pass as a time.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
RFC3339_MESSAGE = "Must be an RFC 3339 time with a UTC offset, like 2030-01-31T09:00:00Z."


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 `date-time` (with its offset) as an aware datetime; ValueError for any
    other text, an impossible date or time included. Fractions beyond microseconds are
    cut, as Python keeps microseconds."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(RFC3339_MESSAGE)
    date, time = text[:10], text[11:]
    whole, _, rest = time.partition(".")
    if rest:  # digits, then the offset
        digits = len(rest) - len(rest.lstrip("0123456789"))
        time = f"{whole}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    return datetime.fromisoformat(f"{date}T{time.upper()}")


class Rfc3339DateTime(fields.AwareDateTime):
    """An aware date-time read by `parse_rfc3339` (the OpenAPI document says
    `format: date-time`, which is RFC 3339's)."""

    default_error_messages = {"invalid": RFC3339_MESSAGE}

    def __init__(self, **kwargs: Any):
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        try:
            return parse_rfc3339(value)
        except ValueError:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None


class StrictInteger(fields.Integer):
    """A JSON integer: refuses true/false (Python counts them as ints), fractions (500.5
    and 500.0 alike) and strings of digits."""

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class ResponseSchema(Schema):
    """Base of the schemas that shape responses (never loaded). The OpenAPI document
    leaves them open (no `additionalProperties: false`), so a client generated today
    accepts fields a later version adds; request schemas stay closed (marshmallow's
    RAISE). Subclasses mark every field `required=True`: it is always present."""

    class Meta:
        unknown = EXCLUDE


class StrictBoolean(fields.Boolean):
    """A JSON boolean: true or false, nothing else. marshmallow's Boolean also takes
    "yes", "1", 1 and 0 (1 == True in Python, so even a truthy set of {True} would)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if type(value) is not bool:
            raise self.make_error("invalid")
        return value
