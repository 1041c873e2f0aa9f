"""The schema of OpenAI's `POST /v1/images/edits`: one or more images, an optional mask whose
fully transparent pixels mark where to paint, and the generations fields.

Several images: each is edited `n` times, so `n * len(image)` images come back, and output
image i starts from image i modulo their count. Without a mask, an image with fully transparent
pixels is its own mask, as OpenAI does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from backend.view import image_rules
from backend.view.edit import DEFAULT_MASK_BLUR, ImageData, ImageList
from backend.view.openai import _SIZE, OpenAIImageCommand, OpenAIImageRequestSchema

# OpenAI paints the masked area anew; without a mask the picture is redrawn, keeping its layout.
MASKED_STRENGTH = 1.0
UNMASKED_STRENGTH = 0.75


class OpenAIEditRequestSchema(OpenAIImageRequestSchema):
    """`POST /v1/images/edits` (multipart, as OpenAI's client sends it; JSON works too)."""

    image = ImageList(
        required=True,
        metadata={"description": "The image(s) to edit: files `image` or `image[]`."},
    )
    mask = ImageData(
        allow_none=True,
        metadata={"description": "A PNG whose fully transparent pixels mark where to paint."},
    )
    # Accepted so OpenAI's clients work; they do not change what a diffusion model draws.
    input_fidelity = fields.String(allow_none=True, validate=validate.OneOf(["high", "low"]))
    safety_identifier = fields.String(allow_none=True)
    partial_images = fields.Integer(
        allow_none=True,
        validate=validate.Equal(0, error="Streaming is not offered; leave partial_images unset."),
    )
    # This server's knob: how far to move away from the input (OpenAI has none).
    strength = fields.Float(
        allow_none=True,
        validate=image_rules.STRENGTH_RANGE,
        metadata={"description": "0 keeps the image, 1 ignores it (default 1 with a mask, 0.75)."},
    )

    @post_load
    def _to_command(self, data: dict[str, Any], **kwargs: Any) -> OpenAIImageCommand:
        model = self._model(data)
        images = [image_rules.read(self, "image", each) for each in data["image"]]
        n = data.get("n") or 1
        if n * len(images) > self.limits.max_images:
            raise ValidationError(
                {"n": [f"n x images is {n * len(images)}, more than {self.limits.max_images}."]}
            )
        mask = None
        if data.get("mask") is not None:
            mask = image_rules.read(self, "mask", data["mask"])
        elif _has_transparency(images[0]):
            mask = images[0]  # OpenAI's rule: the image's own transparent pixels
        strength = data.get("strength")
        if strength is None:
            strength = UNMASKED_STRENGTH if mask is None else MASKED_STRENGTH
        width, height = _given_size(data.get("size"))
        sized = image_rules.make_input(
            self,
            model,
            images,
            strength=strength,
            width=width,
            height=height,
            mask=mask,
            mask_blur=DEFAULT_MASK_BLUR,
            mask_from_alpha=True,
        )
        size = f"{sized.width}x{sized.height}"
        command = super()._to_command({**data, "size": size, "n": n * len(images)})
        return replace(command, request=replace(command.request, init_image=sized.image))


def _given_size(size: str | None) -> tuple[int | None, int | None]:
    """The size asked for; (None, None) for auto or absent: the first image's own size."""
    match = _SIZE.match(size or "")
    return (int(match[1]), int(match[2])) if match else (None, None)


def _has_transparency(image: Any) -> bool:
    return image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 0
