"""The hires fix and SDXL refiner fields of our txt2img API (`/image/generate`, `/jobs`).

A mixin of the generate schema: the fields are AUTOMATIC1111's names, the rules are
`image_rules`' (shared with A1111's txt2img), and `with_extras` puts the result on the request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from marshmallow import fields

from backend.model.types import GenerationRequest
from backend.view import image_rules
from backend.view.fields import StrictBoolean, WholeNumber
from backend.view.rules import GenerationSchema, between

HIRES_FIELDS = (
    "enable_hr",
    "hr_scale",
    "hr_resize_x",
    "hr_resize_y",
    "hr_upscaler",
    "hr_second_pass_steps",
    "denoising_strength",
)
REFINER_FIELDS = ("refiner", "refiner_switch_at")


class RefinerName(fields.Field):
    """A refiner: its model name (REFINER_MODEL), A1111's checkpoint title, true, or none."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str | bool):
            raise self.make_error("invalid")
        return value

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Must be the refiner's name, true or false."
    }


class ExtrasMixin:
    """Fields and rules for the hires fix and the refiner (a mixin of a GenerationSchema)."""

    enable_hr = StrictBoolean(
        allow_none=True,
        metadata={
            "description": "Hires fix: draw at width x height, upscale, then redraw the upscaled "
            "image (img2img on the same weights) at the final size."
        },
    )
    hr_scale = fields.Float(
        allow_none=True,
        validate=image_rules.HR_SCALE_RANGE,
        metadata={"description": "Hires fix: the final size over width x height (default 2)."},
    )
    hr_resize_x = WholeNumber(
        allow_none=True,
        metadata={"description": "Hires fix: the final width (0: from hr_scale or hr_resize_y)."},
    )
    hr_resize_y = WholeNumber(
        allow_none=True,
        metadata={"description": "Hires fix: the final height (0: from hr_scale or hr_resize_x)."},
    )
    hr_upscaler = fields.String(
        allow_none=True,
        metadata={"description": "Hires fix: Latent (default), Lanczos or Nearest."},
    )
    hr_second_pass_steps = WholeNumber(
        allow_none=True,
        metadata={"description": "Hires fix: steps of the second pass (0: the request's steps)."},
    )
    denoising_strength = fields.Float(
        allow_none=True,
        validate=image_rules.STRENGTH_RANGE,
        metadata={"description": "Hires fix: the second pass's strength, 0..1 (default 0.7)."},
    )
    refiner = RefinerName(
        allow_none=True,
        metadata={
            "description": "The SDXL refiner (REFINER_MODEL): its name or true; absent: none.",
        },
    )
    refiner_switch_at = fields.Float(
        allow_none=True,
        validate=image_rules.SWITCH_AT_RANGE,
        metadata={"description": "The fraction of the steps the base model runs (default 0.8)."},
    )

    def bound_extras(self: Any) -> None:
        """The limits of these fields that depend on the server's settings."""
        if "hr_second_pass_steps" in self.fields:
            self.bound("hr_second_pass_steps", between(0, self.limits.max_steps))
        for name in ("hr_resize_x", "hr_resize_y"):
            if name in self.fields:
                self.bound(name, between(0, max(self.limits.max_width, 64)))

    def with_extras(self, data: dict[str, Any], request: GenerationRequest) -> GenerationRequest:
        """`request` with the hires fix and the refiner `data` asks for (none when absent)."""
        schema: GenerationSchema = self  # type: ignore[assignment]
        model = data.get("model")
        hires = None
        if data.get("enable_hr"):
            hires = image_rules.hires(
                schema,
                model,
                request.width,
                request.height,
                scale=data.get("hr_scale"),
                resize_x=data.get("hr_resize_x") or None,
                resize_y=data.get("hr_resize_y") or None,
                upscaler=data.get("hr_upscaler"),
                steps=data.get("hr_second_pass_steps") or None,
                strength=data.get("denoising_strength"),
            )
        refiner = image_rules.refiner(
            schema, model, data.get("refiner"), data.get("refiner_switch_at")
        )
        if hires is None and refiner is None:
            return request
        return replace(request, hires=hires, refiner=refiner)
