"""OpenAI-compatible image generation and model listing, for OpenAI's clients."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine
from backend.controller.request_body import load_generation
from backend.model.errors import ModelNotFoundError
from backend.view.openai import (
    OpenAIImageRequestSchema,
    dump_images,
    dump_model,
    dump_model_list,
)

blueprint = Blueprint("openai", __name__, url_prefix="/v1")


@blueprint.post("/images/generations")
def generate_images() -> Response:
    """OpenAI's `images.generate`: `{"created", "data": [{"b64_json"}]}`."""
    engine = get_engine()
    command = load_generation(OpenAIImageRequestSchema)
    result = engine.generate(command.request, command.output)
    return jsonify(dump_images(result, command.output.format))


@blueprint.get("/models")
def list_models() -> Response:
    """OpenAI's `models.list`: the models a request can name now."""
    return jsonify(dump_model_list(get_engine().models()))


@blueprint.get("/models/<string:model_id>")
def get_model(model_id: str) -> Response:
    """OpenAI's `models.retrieve`."""
    engine = get_engine()
    for info in engine.models():
        if info.spec.name == model_id and info.exists:
            return jsonify(dump_model(info))
    raise ModelNotFoundError(model_id, engine.catalog.available())
