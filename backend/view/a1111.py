"""Schemas of the AUTOMATIC1111-compatible endpoints (`/sdapi/v1/...`)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from backend.model import schedulers
from backend.model.images import infotext
from backend.model.service import ModelInfo
from backend.model.types import GenerationRequest, GenerationResult
from backend.view.a1111_options import OverrideSettingsSchema, clip_skip_of, clip_skip_problems
from backend.view.fields import StrictBoolean, WholeNumber
from backend.view.generate import b64
from backend.view.lora_tags import split_prompt, tag_problems
from backend.view.rules import (
    CLIP_SKIP_RANGE,
    MAX_GUIDANCE,
    MIN_SIDE,
    SEED_RANGE,
    GenerationSchema,
    between,
)

# AUTOMATIC1111's "schedule type" (since 1.9); only these two change what our samplers do.
SCHEDULE_TYPES = {"automatic": "Automatic", "karras": "Karras"}
# "sd-turbo [a1b2c3d4]" or "sd_turbo.safetensors [hash]": the title's model part.
_TITLE = re.compile(r"^(?P<name>.*?)(\.safetensors|\.ckpt)?(\s*\[[0-9a-fA-F]+\])?$")


@dataclass(frozen=True)
class Txt2ImgCommand:
    """A validated txt2img call: `n_iter` batches of `request.num_images` images."""

    request: GenerationRequest
    n_iter: int
    send_images: bool
    parameters: dict[str, Any]  # the request as AUTOMATIC1111 echoes it


def model_from_title(title: str) -> str:
    """Our model name for an AUTOMATIC1111 checkpoint title."""
    match = _TITLE.match(title.strip())
    return match["name"] if match else title


class Txt2ImgRequestSchema(GenerationSchema):
    """`POST /sdapi/v1/txt2img`: the subset real clients rely on.

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
    send_images = StrictBoolean(allow_none=True, load_default=True)
    save_images = StrictBoolean(allow_none=True)
    # Features this server does not have: accepted only when off.
    enable_hr = StrictBoolean(
        allow_none=True, validate=validate.Equal(False, error="Hires fix is not supported.")
    )
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

    @post_load
    def _to_command(self, data: dict[str, Any], **_: Any) -> Txt2ImgCommand:
        scheduler = self._scheduler(data)
        width, height = self._size(data)
        seed = data.get("seed")
        prompt, chosen = split_prompt(data["prompt"])  # <lora:name:weight> tags out of the text
        request = self.make_request(
            self._model(data),
            prompt=prompt,
            negative_prompt=data.get("negative_prompt"),
            width=width,
            height=height,
            steps=data.get("steps"),
            guidance_scale=data.get("cfg_scale"),
            seed=seed,
            num_images=data.get("batch_size"),
            scheduler=scheduler.name if scheduler else None,
            clip_skip=clip_skip_of(data),
        )
        vae = (data.get("override_settings") or {}).get("sd_vae")
        request = replace(request, vae=self.vae_choice(request.model, vae), loras=chosen)
        parameters = {
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
        return Txt2ImgCommand(
            request, parameters["n_iter"], data.get("send_images") is not False, parameters
        )

    def _model(self, data: dict[str, Any]) -> str | None:
        title = (data.get("override_settings") or {}).get("sd_model_checkpoint")
        return model_from_title(title) if title else None

    def _size(self, data: dict[str, Any]) -> tuple[int, int]:
        defaults = self.spec(self._model(data)).defaults
        return data.get("width") or defaults.width, data.get("height") or defaults.height

    def _scheduler(self, data: dict[str, Any]) -> schedulers.SchedulerChoice | None:
        """The sampler asked for (sampler_name, else sampler_index), with its schedule type."""
        family = self.spec(self._model(data)).family
        name = data.get("sampler_name") or data.get("sampler_index")
        schedule = (data.get("scheduler") or "automatic").lower()
        if schedule not in SCHEDULE_TYPES:
            raise ValueError(
                f"Unknown scheduler '{schedule[:40]}'. Known: {', '.join(SCHEDULE_TYPES)}."
            )
        if not name:
            if schedule == "karras":
                raise ValueError("scheduler 'karras' needs a sampler_name.")
            return None
        choice = schedulers.find(name, family)
        if choice is not None and schedule == "karras" and not choice.karras:
            choice = schedulers.find(f"{choice.name}_karras", family)
            if choice is None:
                raise ValueError(f"Sampler '{name[:40]}' has no Karras schedule.")
        if choice is None:
            known = ", ".join(c.label for c in schedulers.choices(family) if not c.karras)
            raise ValueError(f"Unknown sampler '{name[:40]}'. Known: {known}.")
        return choice


class Txt2ImgResponseSchema(Schema):
    """The answer of `POST /sdapi/v1/txt2img`."""

    images = fields.List(fields.String(), required=True, metadata={"description": "Base64 PNGs."})
    parameters = fields.Dict(
        required=True, metadata={"description": "The request, with defaults filled in."}
    )
    info = fields.String(
        required=True, metadata={"description": "JSON text: seeds, sampler, infotexts..."}
    )


def dump_txt2img(command: Txt2ImgCommand, results: list[GenerationResult]) -> dict[str, Any]:
    """AUTOMATIC1111's txt2img response for the `n_iter` results of `command`."""
    first = results[0]
    request = replace(first.request, seed=first.seed)
    seeds = [seed for result in results for seed in result.seeds]
    count = len(seeds)
    info = {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": request.width,
        "height": request.height,
        "sampler_name": first.sampler,
        "cfg_scale": request.guidance_scale,
        "steps": request.steps,
        "batch_size": request.num_images,
        "restore_faces": False,
        "sd_model_name": first.model,
        "sd_model_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": request.clip_skip or 1,
        "index_of_first_image": 0,
        "infotexts": [infotext(request, seed, first.sampler, first.model) for seed in seeds],
        "extra_generation_params": {},
    }
    images = [b64(image.data) for result in results for image in result.images]
    return Txt2ImgResponseSchema().dump(
        {
            "images": images if command.send_images else [],
            "parameters": command.parameters,
            "info": json.dumps(info),
        }
    )


class SdModelSchema(Schema):
    """A checkpoint as AUTOMATIC1111 lists them."""

    title = fields.String(required=True)
    model_name = fields.String(required=True)
    hash = fields.String(required=True, allow_none=True)
    sha256 = fields.String(required=True, allow_none=True)
    filename = fields.String(required=True)
    config = fields.String(required=True, allow_none=True)


def dump_sd_models(infos: list[ModelInfo]) -> list[dict[str, Any]]:
    """`GET /sdapi/v1/sd-models`: the models present on disk."""
    return SdModelSchema(many=True).dump(
        [
            {
                "title": info.spec.name,
                "model_name": info.spec.name,
                "hash": None,
                "sha256": None,
                "filename": info.folder,
                "config": None,
            }
            for info in infos
            if info.exists
        ]
    )


class SamplerSchema(Schema):
    """A sampler as AUTOMATIC1111 lists them."""

    name = fields.String(required=True)
    aliases = fields.List(fields.String(), required=True)
    options = fields.Dict(required=True)


def dump_samplers(choices: tuple[schedulers.SchedulerChoice, ...]) -> list[dict[str, Any]]:
    """`GET /sdapi/v1/samplers` (Karras variants are a schedule type, listed separately)."""
    return SamplerSchema(many=True).dump(
        [
            {"name": choice.label, "aliases": [choice.name, *choice.aliases], "options": {}}
            for choice in choices
            if not choice.karras
        ]
    )


class ScheduleTypeSchema(Schema):
    """A schedule type as AUTOMATIC1111 lists them."""

    name = fields.String(required=True)
    label = fields.String(required=True)


def dump_schedule_types() -> list[dict[str, Any]]:
    """`GET /sdapi/v1/schedulers`."""
    return ScheduleTypeSchema(many=True).dump(
        [{"name": name, "label": label} for name, label in SCHEDULE_TYPES.items()]
    )


class OptionsSchema(Schema):
    """The part of AUTOMATIC1111's options that clients read: the current checkpoint."""

    sd_model_checkpoint = fields.String(required=True)


class ScriptsSchema(Schema):
    """`GET /sdapi/v1/scripts`: none (clients probe it for extensions)."""

    txt2img = fields.List(fields.String(), required=True)
    img2img = fields.List(fields.String(), required=True)
