"""OpenAI-compatible image generation and model listing, for OpenAI's clients."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine, request_owner
from backend.controller.form_body import load_upload
from backend.controller.openai_stream import stream_images
from backend.controller.request_body import load_generation
from backend.model.errors import ModelNotFoundError
from backend.view.openai import (
    OpenAIImageRequestSchema,
    dump_images,
    dump_model,
    dump_model_list,
)
from backend.view.openai_edits import OpenAIEditRequestSchema

blueprint = Blueprint("openai", __name__, url_prefix="/v1")


@blueprint.post("/images/generations")
def generate_images() -> Response:
    """OpenAI's `images.generate`: `{"created", "data": [{"b64_json"}]}`; with `stream`,
    Server-Sent Events (partial images, then the images)."""
    engine = get_engine()
    command = load_generation(OpenAIImageRequestSchema)
    if command.stream:
        return stream_images(command)
    result = engine.generate(command.request, command.output, request_owner())
    return jsonify(dump_images(result, command.output.format))


# OpenAI's client sends one image as `image`, a list as `image[]` (other clients: `image[0]`...).
EDIT_FILES = {
    "image": ("image", "image[]", *(f"image[{index}]" for index in range(16))),
    "mask": ("mask",),
}


@blueprint.post("/images/edits")
def edit_images() -> Response:
    """OpenAI's `images.edit`: the images redrawn per the prompt, masked areas repainted."""
    engine = get_engine()
    command = load_upload(OpenAIEditRequestSchema, EDIT_FILES, ("image",))
    result = engine.generate(command.request, command.output, request_owner())
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
