"""marshmallow pieces shared by the API's schemas and the runtime configuration's (which
the CLI uses too, without the API)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields


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
