"""`POST /sdapi/v1/img2img`: AUTOMATIC1111's img2img and inpainting body, on the txt2img fields."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from backend.view import image_rules
from backend.view.a1111_common import A1111Command, A1111GenerationSchema
from backend.view.fields import WholeNumber

# A1111's numbers for what the masked area starts from, and how the input meets the size.
INPAINTING_FILLS = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}
RESIZE_MODES = {0: "resize", 1: "crop", 2: "fill", 3: "latent"}
DEFAULT_STRENGTH = 0.75
DEFAULT_MASK_BLUR = 4


def _one_of(choices: dict[int, str], what: str) -> validate.OneOf:
    labels = ", ".join(f"{number} ({name})" for number, name in choices.items())
    return validate.OneOf(list(choices), error=f"Unknown {what}. Known: {labels}.")


class Img2ImgRequestSchema(A1111GenerationSchema):
    """`POST /sdapi/v1/img2img`: init images (base64, data-URL prefixes accepted), an optional
    mask (white is repainted) and every txt2img field. The output is width x height (default:
    the model's size), the inputs resized to it by `resize_mode`."""

    init_images = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "Base64 images; output image i starts from image i % len."},
    )
    mask = fields.String(allow_none=True, metadata={"description": "Base64; white = repaint."})
    resize_mode = WholeNumber(allow_none=True, validate=_one_of(RESIZE_MODES, "resize_mode"))
    mask_blur = WholeNumber(allow_none=True, validate=image_rules.MASK_BLUR_RANGE)
    mask_blur_x = WholeNumber(allow_none=True, validate=image_rules.MASK_BLUR_RANGE)
    mask_blur_y = WholeNumber(allow_none=True, validate=image_rules.MASK_BLUR_RANGE)
    inpainting_fill = WholeNumber(
        allow_none=True, validate=_one_of(INPAINTING_FILLS, "inpainting_fill")
    )
    # A1111's clients send these as true/false or 0/1.
    inpaint_full_res = fields.Boolean(allow_none=True, metadata={"description": "Only masked."})
    inpaint_full_res_padding = WholeNumber(
        allow_none=True, validate=image_rules.FULL_RES_PADDING_RANGE
    )
    inpainting_mask_invert = fields.Boolean(allow_none=True, metadata={"description": "0 or 1."})
    initial_noise_multiplier = fields.Float(
        allow_none=True,
        validate=validate.Equal(1.0, error="Only 1 (no extra noise) is supported."),
    )
    # Only instruct-pix2pix models read it; this server has none, so it changes nothing.
    image_cfg_scale = fields.Float(allow_none=True)
    include_init_images = fields.Boolean(allow_none=True)

    @validates_schema
    def _check_images(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("init_images"):
            raise ValidationError({"init_images": ["An init image is required."]})
        if data.get("mask_blur") is None:
            blur_x, blur_y = data.get("mask_blur_x"), data.get("mask_blur_y")
            if None not in (blur_x, blur_y) and blur_x != blur_y:
                raise ValidationError(
                    {"mask_blur_y": ["Must equal mask_blur_x: the blur is the same both ways."]}
                )

    @post_load
    def _to_command(self, data: dict[str, Any], **_: Any) -> A1111Command:
        model = self._model(data)
        width, height = self._size(data)
        images = [image_rules.read(self, "init_images", each) for each in data["init_images"]]
        mask = image_rules.read(self, "mask", data["mask"]) if data.get("mask") else None
        blur = _blur(data)
        fill = INPAINTING_FILLS[_or(data.get("inpainting_fill"), 0)]
        full_res = _or(data.get("inpaint_full_res"), True)  # A1111's default: only masked
        padding = _or(data.get("inpaint_full_res_padding"), 0)
        strength = _or(data.get("denoising_strength"), DEFAULT_STRENGTH)
        sized = image_rules.make_input(
            self,
            model,
            images,
            strength=strength,
            width=width,
            height=height,
            mask=mask,
            resize_mode=RESIZE_MODES[_or(data.get("resize_mode"), 0)],
            mask_blur=blur,
            mask_invert=bool(data.get("inpainting_mask_invert")),
            fill=fill,
            full_res=full_res,
            full_res_padding=padding,
            fields=("init_images", "mask"),
        )
        request = replace(self.base_request(data, width, height), init_image=sized.image)
        parameters = {
            **self.base_parameters(data, request, width, height),
            "denoising_strength": strength,
            "resize_mode": _or(data.get("resize_mode"), 0),
            "mask_blur": blur,
            "inpainting_fill": _or(data.get("inpainting_fill"), 0),
            "inpaint_full_res": full_res,
            "inpaint_full_res_padding": padding,
            "inpainting_mask_invert": int(bool(data.get("inpainting_mask_invert"))),
        }
        if not data.get("include_init_images"):  # A1111 echoes the images only when asked
            parameters.update(init_images=None, mask=None)
        extra: dict[str, Any] = {"Denoising strength": strength}
        if mask is not None:
            extra["Mask blur"] = blur
            if full_res:
                extra.update({"Inpaint area": "Only masked", "Masked area padding": padding})
        extra.update(self.refiner_extra(request))
        return A1111Command(
            request, parameters["n_iter"], data.get("send_images") is not False, parameters, extra
        )


def _or(value: Any, default: Any) -> Any:
    """`value`, or `default` where the client sent none (0 and False are values)."""
    return default if value is None else value


def _blur(data: dict[str, Any]) -> int:
    """The mask blur: `mask_blur` (which sets both ways in A1111), else mask_blur_x/y."""
    for name in ("mask_blur", "mask_blur_x", "mask_blur_y"):
        if data.get(name) is not None:
            return data[name]
    return DEFAULT_MASK_BLUR
