"""The OpenAPI document of this server."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from backend import __version__
from backend.controller import get_engine
from backend.view.openapi import build_spec

blueprint = Blueprint("openapi", __name__)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """OpenAPI 3, generated from the request and response schemas (built once per process)."""
    if "openapi" not in current_app.extensions:
        engine = get_engine()
        current_app.extensions["openapi"] = build_spec(
            engine.settings.limits, engine.catalog, __version__
        )
    return jsonify(current_app.extensions["openapi"])
