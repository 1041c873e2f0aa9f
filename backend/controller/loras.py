"""The LoRAs in LORAS_DIR, in our shape and in AUTOMATIC1111's (read without torch)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine
from backend.model.lora_files import list_loras
from backend.view.loras import dump_a1111_loras, dump_loras

blueprint = Blueprint("loras", __name__)


@blueprint.get("/loras")
def loras() -> Response:
    """Every LoRA requests may name: name, family, format."""
    return jsonify(dump_loras(list_loras(get_engine().settings.assets.loras_dir)))


@blueprint.get("/sdapi/v1/loras")
def a1111_loras() -> Response:
    """The same, as AUTOMATIC1111 lists them (paths relative to LORAS_DIR)."""
    return jsonify(dump_a1111_loras(list_loras(get_engine().settings.assets.loras_dir)))
