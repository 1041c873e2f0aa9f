"""Image generation."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine
from backend.controller.request_body import json_object, wants_json
from backend.model.types import GenerationResult
from backend.view.generate import GenerateRequestSchema, dump_result

blueprint = Blueprint("image", __name__)


@blueprint.post("/image/generate")
def generate() -> Response:
    """Generate one image from a prompt: PNG bytes, or JSON when the client asks for it."""
    engine = get_engine()
    schema = GenerateRequestSchema(
        limits=engine.settings.limits, defaults=engine.defaults, size_multiple=engine.size_multiple
    )
    result = engine.generate(schema.load(json_object()))
    response = jsonify(dump_result(result)) if wants_json() else _image_response(result)
    response.headers.update(_result_headers(result))
    response.vary.add("Accept")
    return response


def _image_response(result: GenerationResult) -> Response:
    image = result.images[0]
    response = Response(image.data, mimetype=image.media_type)
    response.headers["Content-Disposition"] = f'inline; filename="{image.seed}.png"'
    return response


def _result_headers(result: GenerationResult) -> dict[str, str]:
    return {
        "X-Seed": str(result.seed),
        "X-Model": result.model,
        "X-Generation-Time": f"{result.generation_seconds:.3f}",
    }
