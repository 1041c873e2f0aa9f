"""The schema of `POST /image/edit` and `POST /jobs/edit`: every generate field, plus an input
image, an optional mask (white = repaint) and how to use them.

The same schema reads JSON (images as base64 text, `data:` URL prefixes accepted) and multipart
forms (images as file parts, `backend/controller/form_body.py` turns the form into this body).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from marshmallow import RAISE, ValidationError, fields, post_load, validate, validates_schema

from backend.model.image_input import RESIZE_MODES
from backend.model.types import INPAINT_FILLS
from backend.view import image_rules
from backend.view.fields import StrictBoolean, WholeNumber
from backend.view.generate import GenerateCommand, GenerateRequestSchema
from backend.view.hires_fields import HIRES_FIELDS

DEFAULT_STRENGTH = 0.75
DEFAULT_MASK_BLUR = 4  # as AUTOMATIC1111
MAX_INPUT_IMAGES = 16  # as OpenAI's edits
EDIT_RESIZE_MODES = tuple(mode for mode in RESIZE_MODES if mode != "latent")


class ImageData(fields.Field):
    """An image: base64 text (a `data:` URL prefix is fine) or, from a form, a file's bytes."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Must be an image: base64 text, or a file in a form."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str | bytes):
            raise self.make_error("invalid")
        return value


class ImageList(fields.Field):
    """One image, or a list of them (output image i starts from image i modulo their count)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if not 1 <= len(values) <= MAX_INPUT_IMAGES:
            raise ValidationError(f"Send between 1 and {MAX_INPUT_IMAGES} images.")
        item = ImageData()
        return [item.deserialize(each) for each in values]


class EditRequestSchema(GenerateRequestSchema):
    """`/image/edit`: img2img without a mask, inpainting with one."""

    class Meta:
        unknown = RAISE
        # The hires fix is a txt2img pass; an edit's own strength is `denoising_strength`.
        exclude = tuple(name for name in HIRES_FIELDS if name != "denoising_strength")

    image = ImageList(
        required=True,
        metadata={
            "description": "The image to start from (or a list): base64, or a file in a form.",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        },
    )
    mask = ImageData(
        allow_none=True,
        metadata={
            "description": "Where to repaint: white repaints, black keeps (resized to the image).",
            "type": "string",
        },
    )
    strength = fields.Float(
        allow_none=True,
        validate=image_rules.STRENGTH_RANGE,
        metadata={"description": "0 keeps the image, 1 ignores it (default 0.75)."},
    )
    denoising_strength = fields.Float(
        allow_none=True,
        validate=image_rules.STRENGTH_RANGE,
        metadata={"description": "Alias of strength."},
    )
    mask_blur = WholeNumber(
        allow_none=True,
        validate=image_rules.MASK_BLUR_RANGE,
        metadata={"description": "Pixels of Gaussian blur on the mask's edge (default 4)."},
    )
    mask_invert = StrictBoolean(
        allow_none=True, metadata={"description": "Repaint the black part instead."}
    )
    resize_mode = fields.String(
        allow_none=True,
        validate=validate.OneOf(EDIT_RESIZE_MODES),
        metadata={
            "description": "How the image meets width x height: resize (stretch, default), "
            "crop (fill and cut) or fill (fit and pad)."
        },
    )
    inpaint_full_res = StrictBoolean(
        allow_none=True,
        metadata={"description": "Repaint only the mask's box, at full resolution."},
    )
    inpaint_full_res_padding = WholeNumber(
        allow_none=True,
        validate=image_rules.FULL_RES_PADDING_RANGE,
        metadata={"description": "Pixels kept around that box (default 32)."},
    )
    inpainting_fill = fields.String(
        allow_none=True,
        validate=validate.OneOf(INPAINT_FILLS),
        metadata={"description": "What the masked area starts from (default original)."},
    )

    @validates_schema
    def _check_strength(self, data: dict[str, Any], **_: Any) -> None:
        given = data.get("strength"), data.get("denoising_strength")
        if None not in given and given[0] != given[1]:
            raise ValidationError(
                {"denoising_strength": ["Conflicts with 'strength'; send only one of them."]}
            )

    @post_load
    def _to_command(self, data: dict[str, Any], **kwargs: Any) -> GenerateCommand:
        model = data.get("model")
        images = [image_rules.read(self, "image", each) for each in data["image"]]
        mask = None
        if data.get("mask") is not None:
            mask = image_rules.read(self, "mask", data["mask"])
        strength = data.get("strength")
        if strength is None:
            strength = data.get("denoising_strength")
        sized = image_rules.make_input(
            self,
            model,
            images,
            strength=DEFAULT_STRENGTH if strength is None else strength,
            width=data.get("width"),
            height=data.get("height"),
            mask=mask,
            resize_mode=data.get("resize_mode") or "resize",
            mask_blur=_given(data, "mask_blur", DEFAULT_MASK_BLUR),
            mask_invert=bool(data.get("mask_invert")),
            fill=data.get("inpainting_fill") or "original",
            full_res=bool(data.get("inpaint_full_res")),
            full_res_padding=_given(data, "inpaint_full_res_padding", 32),
        )
        # The generate fields, at the size the input was normalised to.
        rest = {key: value for key, value in data.items() if key != "denoising_strength"}
        command = super()._to_command({**rest, "width": sized.width, "height": sized.height})
        return replace(command, request=replace(command.request, init_image=sized.image))


def _given(data: dict[str, Any], name: str, default: Any) -> Any:
    return default if data.get(name) is None else data[name]
