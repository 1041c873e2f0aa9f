"""The models this server can serve."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine
from backend.view.models import dump_models

blueprint = Blueprint("models", __name__)


@blueprint.get("/models")
def list_models() -> Response:
    """Every configured model: folder, presence, loaded state, family, defaults."""
    return jsonify(dump_models(get_engine().models()))
