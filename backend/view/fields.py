"""Field types shared by the request schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import fields


class WholeNumber(fields.Integer):
    """An integer that also takes 512.0 and "512" (what loose clients send), never 512.5 or true."""

    def _format_num(self, value: Any) -> int:
        # marshmallow's lenient Integer would silently truncate 512.5 to 512.
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not a whole number")
        return super()._format_num(value)


class StrictBoolean(fields.Boolean):
    """JSON true or false only: not 0, 1 or "yes", so the OpenAPI `boolean` type tells the truth."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value
