"""Reading request bodies, with a clear error for each way they can be wrong."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from backend.controller import get_engine
from backend.controller.json_input import JSONInputError, parse_json
from backend.view.rules import GenerationSchema


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 415/400 that says what is wrong with it."""
    if not request.is_json:
        got = request.mimetype or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {got}).")
    try:
        data = request.get_data(cache=True)
    except HTTPException:
        raise  # werkzeug's own: a client that disconnected, a body over the limit
    except Exception:  # the server's reader: gunicorn's chunk errors, a timed-out socket
        # Only the input stream runs here, and whatever broke it is the client's framing.
        raise BadRequest("The request body could not be read: its framing is broken.") from None
    limit = request.max_content_length
    # A chunked body has no Content-Length to check up front, and werkzeug stops reading it at
    # the limit without saying so: a body that fills the limit was cut short.
    if limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()
    try:
        body = parse_json(data)
    except JSONInputError as error:
        raise BadRequest(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise BadRequest(f"The request body must be a JSON object, not {_json_type(body)}.")
    return body


def load_generation(schema_class: type[GenerationSchema]) -> Any:
    """The JSON body, validated by a generation schema with this server's limits and models."""
    engine = get_engine()
    return schema_class(
        limits=engine.settings.limits,
        catalog=engine.catalog,
        loras_dir=engine.settings.assets.loras_dir,
    ).load(json_object())


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
