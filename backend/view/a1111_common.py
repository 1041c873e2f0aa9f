"""What AUTOMATIC1111's txt2img and img2img bodies share: fields, checks, the request they make."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from marshmallow import EXCLUDE, ValidationError, fields, validate, validates_schema

from backend.model import schedulers
from backend.model.types import GenerationRequest
from backend.view import image_rules
from backend.view.a1111_options import (
    OverrideSettingsSchema,
    clip_skip_of,
    clip_skip_problems,
    sampler_of,
)
from backend.view.fields import StrictBoolean, WholeNumber
from backend.view.lora_tags import split_prompt, tag_problems
from backend.view.rules import (
    CLIP_SKIP_RANGE,
    MAX_GUIDANCE,
    MIN_SIDE,
    SEED_RANGE,
    GenerationSchema,
    between,
)

# "sd-turbo [a1b2c3d4]" or "sd_turbo.safetensors [hash]": the title's model part.
_TITLE = re.compile(r"^(?P<name>.*?)(\.safetensors|\.ckpt)?(\s*\[[0-9a-fA-F]+\])?$")


def model_from_title(title: str) -> str:
    """Our model name for an AUTOMATIC1111 checkpoint title."""
    match = _TITLE.match(title.strip())
    return match["name"] if match else title


@dataclass(frozen=True)
class A1111Command:
    """A validated txt2img or img2img call: `n_iter` batches of `request.num_images` images."""

    request: GenerationRequest
    n_iter: int
    send_images: bool
    parameters: dict[str, Any]  # the request as AUTOMATIC1111 echoes it
    # Infotext entries beyond the base ones ("Denoising strength", "Hires upscale", ...).
    extra: dict[str, Any] = field(default_factory=dict)


class A1111GenerationSchema(GenerationSchema):
    """The fields of A1111's txt2img that img2img has too, and their checks.

    Unknown fields are ignored, as AUTOMATIC1111 does (clients send dozens of defaults), but
    features this server lacks are refused when a request actually turns them on.
    """

    class Meta:
        unknown = EXCLUDE

    prompt = fields.String(load_default="", metadata={"description": "May be empty, as in A1111."})
    negative_prompt = fields.String(allow_none=True, load_default="")
    width = WholeNumber(allow_none=True, metadata={"multipleOf": 8})
    height = WholeNumber(allow_none=True, metadata={"multipleOf": 8})
    steps = WholeNumber(allow_none=True)
    cfg_scale = fields.Float(allow_none=True, validate=between(0.0, MAX_GUIDANCE))
    seed = WholeNumber(allow_none=True, validate=SEED_RANGE)
    batch_size = WholeNumber(allow_none=True, metadata={"description": "Images per pipeline call."})
    n_iter = WholeNumber(allow_none=True, metadata={"description": "Pipeline calls in a row."})
    sampler_name = fields.String(allow_none=True, metadata={"description": "e.g. Euler a"})
    sampler_index = fields.String(allow_none=True, metadata={"description": "Old sampler_name."})
    scheduler = fields.String(allow_none=True, metadata={"description": "automatic or karras"})
    override_settings = fields.Nested(OverrideSettingsSchema, allow_none=True)
    clip_skip = WholeNumber(
        allow_none=True,
        validate=CLIP_SKIP_RANGE,
        metadata={"description": "Same as override_settings.CLIP_stop_at_last_layers."},
    )
    denoising_strength = fields.Float(allow_none=True, validate=image_rules.STRENGTH_RANGE)
    refiner_checkpoint = fields.String(
        allow_none=True, metadata={"description": "REFINER_MODEL's name (SDXL models only)."}
    )
    refiner_switch_at = fields.Float(
        allow_none=True,
        validate=image_rules.SWITCH_AT_RANGE,
        metadata={"description": "The fraction of the steps the base model runs (0.8)."},
    )
    send_images = StrictBoolean(allow_none=True, load_default=True)
    save_images = StrictBoolean(allow_none=True)
    # Features this server does not have: accepted only when off.
    restore_faces = StrictBoolean(
        allow_none=True, validate=validate.Equal(False, error="Face restoration is not supported.")
    )
    tiling = StrictBoolean(
        allow_none=True, validate=validate.Equal(False, error="Tiling is not supported.")
    )
    subseed_strength = fields.Float(
        allow_none=True, validate=validate.Equal(0, error="Variation seeds are not supported.")
    )
    styles = fields.List(
        fields.String(),
        allow_none=True,
        validate=validate.Length(max=0, error="Prompt styles are not supported."),
    )
    script_name = fields.String(
        allow_none=True, validate=validate.Length(max=0, error="Scripts are not supported.")
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        limits = self.limits
        self.bound("width", between(MIN_SIDE, limits.max_width))
        self.bound("height", between(MIN_SIDE, limits.max_height))
        self.bound("steps", between(1, limits.max_steps))
        for name in ("batch_size", "n_iter"):
            self.bound(name, between(1, limits.max_images))
        self.bound_text("prompt", "negative_prompt")

    @validates_schema
    def _check_combination(self, data: dict[str, Any], **_: Any) -> None:
        model = self._model(data)
        errors: dict[str, Any] = {}
        batch, n_iter = data.get("batch_size") or 1, data.get("n_iter") or 1
        if batch * n_iter > self.limits.max_images:
            errors["batch_size"] = [
                f"batch_size x n_iter is {batch * n_iter}, more than the limit of "
                f"{self.limits.max_images} images."
            ]
        errors.update(self.size_problems(model, *self._size(data)))
        try:
            self._scheduler(data)
        except ValueError as problem:
            errors["sampler_name"] = [str(problem)]
        errors.update(clip_skip_problems(self, data, model))
        try:
            self.vae_choice(model, (data.get("override_settings") or {}).get("sd_vae"))
        except ValueError as problem:
            errors.setdefault("override_settings", {})["sd_vae"] = [str(problem)]
        family = self.spec(model).family.value
        if lora_problems := tag_problems(data.get("prompt", ""), family, self.loras_dir):
            errors["prompt"] = lora_problems
        if errors:
            raise ValidationError(errors)

    def base_request(self, data: dict[str, Any], width: int, height: int) -> GenerationRequest:
        """The request the common fields make, drawn at width x height (refiner included)."""
        scheduler = self._scheduler(data)
        prompt, chosen = split_prompt(data["prompt"])  # <lora:name:weight> tags out of the text
        model = self._model(data)
        request = self.make_request(
            model,
            prompt=prompt,
            negative_prompt=data.get("negative_prompt"),
            width=width,
            height=height,
            steps=data.get("steps"),
            guidance_scale=data.get("cfg_scale"),
            seed=data.get("seed"),
            num_images=data.get("batch_size"),
            scheduler=scheduler.name if scheduler else None,
            clip_skip=clip_skip_of(data),
        )
        vae = (data.get("override_settings") or {}).get("sd_vae")
        try:
            refiner = image_rules.refiner(
                self, model, data.get("refiner_checkpoint"), data.get("refiner_switch_at")
            )
        except ValidationError as error:  # image_rules names it `refiner`; A1111 does not
            raise ValidationError({"refiner_checkpoint": error.messages["refiner"]}) from None  # type: ignore[index, call-overload]
        return replace(request, vae=self.vae_choice(model, vae), loras=chosen, refiner=refiner)

    def base_parameters(
        self, data: dict[str, Any], request: GenerationRequest, width: int, height: int
    ) -> dict[str, Any]:
        """The body echoed back as AUTOMATIC1111 does, with the defaults filled in."""
        scheduler = self._scheduler(data)
        seed = data.get("seed")
        return {
            **{key: value for key, value in data.items() if key != "override_settings"},
            "override_settings": data.get("override_settings") or {},
            "width": width,
            "height": height,
            "steps": request.steps,
            "cfg_scale": request.guidance_scale,
            "seed": -1 if seed is None else seed,
            "batch_size": request.num_images,
            "n_iter": data.get("n_iter") or 1,
            "sampler_name": scheduler.label if scheduler else None,
        }

    def refiner_extra(self, request: GenerationRequest) -> dict[str, Any]:
        """A1111's infotext entries for the refiner, if one is used."""
        if request.refiner is None:
            return {}
        return {"Refiner": request.refiner.model, "Refiner switch at": request.refiner.switch_at}

    def _model(self, data: dict[str, Any]) -> str | None:
        title = (data.get("override_settings") or {}).get("sd_model_checkpoint")
        return model_from_title(title) if title else None

    def _size(self, data: dict[str, Any]) -> tuple[int, int]:
        defaults = self.spec(self._model(data)).defaults
        return data.get("width") or defaults.width, data.get("height") or defaults.height

    def _scheduler(self, data: dict[str, Any]) -> schedulers.SchedulerChoice | None:
        """The sampler asked for (sampler_name, else sampler_index), with its schedule type."""
        return sampler_of(data, self.spec(self._model(data)).family)
