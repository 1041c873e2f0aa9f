"""Image generation, under the three paths existing clients call."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine, request_owner
from backend.controller.negotiation import wants_json
from backend.controller.request_body import load_generation
from backend.model.types import EncodedImage, GenerationResult
from backend.view.archive import zip_images
from backend.view.generate import GenerateCommand, GenerateRequestSchema, dump_result

blueprint = Blueprint("image", __name__)

GENERATE_PATHS = ("/image/generate", "/generate", "/generate-image")


@blueprint.post(GENERATE_PATHS[0])
@blueprint.post(GENERATE_PATHS[1])
@blueprint.post(GENERATE_PATHS[2])
def generate() -> Response:
    """Generate images from a prompt: image bytes (a ZIP for several), or JSON."""
    return generation_response(load_generation(GenerateRequestSchema))


def generation_response(command: GenerateCommand) -> Response:
    """Run `command` and answer it: image bytes (a ZIP for several) or JSON, and headers."""
    engine = get_engine()
    result = engine.generate(command.request, command.output, request_owner())
    media_type = result.images[0].media_type
    if wants_json(command.response_format, media_type, engine.settings.response_format):
        response = jsonify(dump_result(result))
    else:
        response = _file_response(result)
    response.headers.update(result_headers(result))
    response.vary.add("Accept")
    return response


def _file_response(result: GenerationResult) -> Response:
    if len(result.images) == 1:
        return image_response(result.images[0])
    response = Response(zip_images(result.images), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'inline; filename="{result.seed}.zip"'
    return response


def image_response(image: EncodedImage) -> Response:
    """One image as a file download named after its seed."""
    response = Response(image.data, mimetype=image.media_type)
    name = f"{image.seed}.{image.extension}"
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    return response


def result_headers(result: GenerationResult) -> dict[str, str]:
    """Headers that say how a result was made."""
    # How it was drawn, for clients that take the bytes (the JSON says it in `info`).
    drawn = {
        f"X-{key.replace('_', '-').title()}": str(value) for key, value in result.notes.items()
    }
    return {
        **drawn,
        "X-Seed": str(result.seed),
        "X-Seeds": ",".join(map(str, result.seeds)),
        "X-Model": result.model,
        "X-Generation-Time": f"{result.generation_seconds:.3f}",
        "X-Queue-Time": f"{result.queue_seconds:.3f}",
    }
