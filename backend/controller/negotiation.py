"""Choosing between image bytes and JSON for a generate response."""

from __future__ import annotations

from flask import request


def wants_json(response_format: str | None, image_type: str, server_default: str) -> bool:
    """JSON or bytes: the body's response_format wins, then an explicit Accept, then the server.

    `*/*` (curl, requests) expresses no preference, so it gets the server's RESPONSE_FORMAT.
    """
    if response_format is not None:
        return response_format in ("b64_json", "json")
    accept = request.accept_mimetypes
    json_quality = _explicit_quality(accept, "application/json")
    image_quality = max(_explicit_quality(accept, image_type), _explicit_quality(accept, "image/*"))
    if json_quality or image_quality:
        return json_quality > image_quality
    return server_default == "json"


def _explicit_quality(accept, media_type: str) -> float:  # noqa: ANN001 (werkzeug MIMEAccept)
    return max((quality for value, quality in accept if value == media_type), default=0)
