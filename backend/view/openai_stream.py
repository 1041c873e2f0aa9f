"""OpenAI's image streaming (`stream: true`): `image_generation.partial_image` events while the
run goes, then one `image_generation.completed` event per image, as OpenAI's API sends them."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from marshmallow import Schema

from backend.model.job_record import JobPreview
from backend.model.types import EncodedImage, GenerationRequest
from backend.view.fields import StrictBoolean, WholeNumber
from backend.view.generate import b64
from backend.view.job_events import sse
from backend.view.rules import between

MAX_PARTIAL_IMAGES = 3  # OpenAI's bound
PARTIAL = "image_generation.partial_image"
COMPLETED = "image_generation.completed"
# Token counts mean nothing for a diffusion model; OpenAI's clients expect the object.
_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


class StreamFieldsSchema(Schema):
    """OpenAI's streaming fields of `POST /v1/images/generations`."""

    stream = StrictBoolean(
        allow_none=True,
        metadata={
            "description": "Answer as Server-Sent Events: image_generation.partial_image "
            "events, then image_generation.completed (one per image)."
        },
    )
    partial_images = WholeNumber(
        allow_none=True,
        validate=between(0, MAX_PARTIAL_IMAGES),
        metadata={"description": "With stream: live previews sent before the image (0-3)."},
    )


def streamed_request(
    request: GenerationRequest, data: dict[str, Any]
) -> tuple[GenerationRequest, int]:
    """`request` with the previews a stream's `partial_images` asks for, and their number."""
    partial_images = data.get("partial_images") or 0
    return replace(request, preview_every=preview_every(request.steps, partial_images)), (
        partial_images
    )


def preview_every(steps: int, partial_images: int) -> int:
    """Steps between previews so that a run of `steps` makes at most `partial_images` of them
    (none at the last step: the final image comes then); 0 for none."""
    if partial_images <= 0 or steps <= 1:
        return 0
    return max(1, math.ceil(steps / (partial_images + 1)))


def _common(request: GenerationRequest, output_format: str, quality: str) -> dict[str, Any]:
    return {
        "background": "opaque",
        "created_at": int(time.time()),
        "output_format": output_format,
        "quality": quality,
        "size": f"{request.width}x{request.height}",
    }


def partial_image_event(
    request: GenerationRequest, preview: JobPreview, index: int, quality: str
) -> str:
    """One partial image: the run's live preview (a small PNG of its latents so far)."""
    output_format = preview.media_type.removeprefix("image/")
    data = {
        "type": PARTIAL,
        "b64_json": b64(preview.data),
        "partial_image_index": index,
        **_common(request, output_format, quality),
    }
    return sse(PARTIAL, data)


def completed_event(
    request: GenerationRequest, image: EncodedImage, output_format: str, quality: str
) -> str:
    """One finished image (with its seed, as this server's non-streaming answer has it)."""
    data = {
        "type": COMPLETED,
        "b64_json": b64(image.data),
        "seed": image.seed,
        "usage": _USAGE,
        **_common(request, output_format, quality),
    }
    return sse(COMPLETED, data)


def error_event(body: dict[str, Any]) -> str:
    """A failure after the stream began, in OpenAI's error shape (its clients raise it)."""
    return sse("error", {"type": "error", **body})
