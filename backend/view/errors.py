"""The one shape of every error response."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields


class ErrorSchema(Schema):
    """`{"error": "human readable message", "details": {...}}`; details only when there are some."""

    error = fields.String(required=True)
    details = fields.Dict(keys=fields.String())


def error_body(message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return ErrorSchema().dump({"error": message, **({"details": details} if details else {})})
