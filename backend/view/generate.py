"""Schemas of the generate endpoints (`/image/generate`, `/generate`, `/generate-image`)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    post_load,
    validate,
    validates_schema,
)

from backend.model import schedulers
from backend.model.types import GenerationRequest, GenerationResult, OutputOptions
from backend.view import loras as lora_rules
from backend.view.fields import WholeNumber
from backend.view.hires_fields import ExtrasMixin
from backend.view.lora_tags import misplaced_tags
from backend.view.preview_fields import preview_every_field, with_previews
from backend.view.rules import (
    CLIP_SKIP_RANGE,
    MAX_GUIDANCE,
    MIN_SIDE,
    OUTPUT_FORMATS,
    SEED_RANGE,
    GenerationSchema,
    between,
)

# Alias -> canonical name. Both spellings are common in existing clients.
ALIASES = {"num_inference_steps": "steps", "cfg_scale": "guidance_scale", "n": "num_images"}
RESPONSE_FORMATS = ("b64_json", "json", "image")


@dataclass(frozen=True)
class GenerateCommand:
    """A validated generate call: what to draw, how to encode it, and how to answer."""

    request: GenerationRequest
    output: OutputOptions
    response_format: str | None  # None: decided by the Accept header, then RESPONSE_FORMAT


def _size_field(description: str) -> WholeNumber:
    return WholeNumber(allow_none=True, metadata={"description": description, "multipleOf": 8})


class GenerateRequestSchema(ExtrasMixin, GenerationSchema):
    """The generate body -> GenerateCommand, with the chosen model's defaults filled in.

    Optional fields accept `null` as "use the default", as clients generated from OpenAPI send it.
    """

    class Meta:
        unknown = RAISE  # an unknown field is nearly always a typo; silently ignoring it misleads

    prompt = fields.String(required=True, metadata={"description": "What to draw."})
    negative_prompt = fields.String(
        allow_none=True, metadata={"description": "What to keep out of the image."}
    )
    width = _size_field("Pixels; default: the model's.")
    height = _size_field("Pixels; default: the model's.")
    steps = WholeNumber(allow_none=True, metadata={"description": "Denoising steps."})
    num_inference_steps = WholeNumber(allow_none=True, metadata={"description": "Alias of steps."})
    guidance_scale = fields.Float(
        allow_none=True,
        validate=between(0.0, MAX_GUIDANCE),
        metadata={"description": "How strictly to follow the prompt (0 or 1: no guidance)."},
    )
    cfg_scale = fields.Float(
        allow_none=True,
        validate=between(0.0, MAX_GUIDANCE),
        metadata={"description": "Alias of guidance_scale."},
    )
    seed = WholeNumber(
        allow_none=True,
        validate=SEED_RANGE,
        metadata={"description": "Same seed, same image; -1 or absent for a random one."},
    )
    num_images = WholeNumber(
        allow_none=True, metadata={"description": "Images in one call; seeds seed, seed+1, ..."}
    )
    n = WholeNumber(allow_none=True, metadata={"description": "Alias of num_images."})
    model = fields.String(
        allow_none=True,
        metadata={"description": "A model name from GET /models; default: the server's."},
    )
    scheduler = fields.String(
        allow_none=True,
        validate=validate.OneOf(schedulers.SCHEDULER_NAMES),
        metadata={"description": "Sampler; default: the model's own."},
    )
    clip_skip = WholeNumber(
        allow_none=True,
        validate=CLIP_SKIP_RANGE,
        metadata={
            "description": "CLIP layers to stop early, AUTOMATIC1111's numbering: 1 (default) "
            "reads the last layer, 2 the one before (diffusers' clip_skip is this minus 1)."
        },
    )
    vae = fields.String(
        allow_none=True,
        metadata={
            "description": "A VAE from GET /sdapi/v1/sd-vae; 'None': the model's own; "
            "absent, null or 'Automatic': DEFAULT_VAE where set, else the model's own."
        },
    )
    loras = lora_rules.loras_field()
    preview_every = preview_every_field()
    output_format = fields.String(
        allow_none=True,
        validate=validate.OneOf(OUTPUT_FORMATS),
        metadata={"description": "Image format; default png."},
    )
    output_compression = WholeNumber(
        allow_none=True,
        validate=between(0, 100),
        metadata={"description": "Quality for jpeg and webp (higher: better, larger)."},
    )
    response_format = fields.String(
        allow_none=True,
        validate=validate.OneOf(
            RESPONSE_FORMATS,
            error="Must be one of: {choices}. ('url' is not offered: images come back inline.)",
        ),
        metadata={"description": "b64_json/json: a JSON body; image: the image bytes."},
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        limits = self.limits
        self.bound("width", between(MIN_SIDE, limits.max_width))
        self.bound("height", between(MIN_SIDE, limits.max_height))
        for name in ("steps", "num_inference_steps"):
            self.bound(name, between(1, limits.max_steps))
        for name in ("num_images", "n"):
            self.bound(name, between(1, limits.max_images))
        self.bound_text("prompt", "negative_prompt")
        self.bound("prompt", validate.Regexp(r"[\s\S]*\S", error="Must not be empty."))
        self.bound_extras()

    @validates_schema
    def _check_combination(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        for alias, canonical in ALIASES.items():
            given = data.get(alias), data.get(canonical)
            if None not in given and given[0] != given[1]:
                errors[alias] = [f"Conflicts with '{canonical}'; send only one of them."]
        errors.update(misplaced_tags(data))
        model = data.get("model")
        width, height = self._size(data)
        errors.update(self.size_problems(model, width, height))
        if data.get("scheduler") and (problem := self.scheduler_problem(model, data["scheduler"])):
            errors["scheduler"] = [problem]
        if problem := self.clip_skip_problem(model, data.get("clip_skip")):
            errors["clip_skip"] = [problem]
        try:
            self.vae_choice(model, data.get("vae"))
        except ValueError as problem:
            errors["vae"] = [str(problem)]
        chosen = lora_rules.choices(data.get("loras"))
        family = self.spec(model).family.value
        if lora_problems := lora_rules.problems(chosen, family, self.loras_dir):
            errors["loras"] = lora_problems
        if errors:
            raise ValidationError(errors)

    @post_load
    def _to_command(self, data: dict[str, Any], **_: Any) -> GenerateCommand:
        request = self.make_request(
            data.get("model"),
            prompt=data["prompt"],
            negative_prompt=data.get("negative_prompt"),
            width=data.get("width"),
            height=data.get("height"),
            steps=_first_given(data, "steps", "num_inference_steps", default=None),
            guidance_scale=_first_given(data, "guidance_scale", "cfg_scale", default=None),
            seed=data.get("seed"),
            num_images=_first_given(data, "num_images", "n", default=None),
            scheduler=data.get("scheduler"),
            clip_skip=data.get("clip_skip"),
        )
        request = replace(
            request,
            vae=self.vae_choice(data.get("model"), data.get("vae")),
            loras=lora_rules.choices(data.get("loras")),
        )
        request = self.with_extras(data, request)  # the hires fix and the refiner
        request = with_previews(data, request)
        output = OutputOptions(
            format=data.get("output_format") or "png", quality=data.get("output_compression")
        )
        return GenerateCommand(request, output, data.get("response_format"))

    def _size(self, data: dict[str, Any]) -> tuple[int, int]:
        defaults = self.spec(data.get("model")).defaults
        return (
            _first_given(data, "width", default=defaults.width),
            _first_given(data, "height", default=defaults.height),
        )


def _first_given(data: dict[str, Any], *names: str, default: Any) -> Any:
    """The value of the first of `names` present and not null, else `default`."""
    return next((data[name] for name in names if data.get(name) is not None), default)


def b64(data: bytes) -> str:
    """Base64 text of `data`, as JSON bodies carry images."""
    return base64.b64encode(data).decode("ascii")


class ParametersSchema(Schema):
    """The exact parameters a result was made with: sending them again reproduces it."""

    prompt = fields.String()
    negative_prompt = fields.String()
    width = fields.Integer()
    height = fields.Integer()
    steps = fields.Integer()
    guidance_scale = fields.Float()
    seed = fields.Integer()
    num_images = fields.Integer()
    scheduler = fields.String()
    model = fields.String()
    loras = fields.List(fields.Dict(), metadata={"description": "[{name, weight}] applied"})
    clip_skip = fields.Integer(allow_none=True)
    vae = fields.String(allow_none=True)
    init_image = fields.Dict(allow_none=True, metadata={"description": "The input, summarised."})
    hires = fields.Dict(allow_none=True, metadata={"description": "The hires fix, if any."})
    refiner = fields.Dict(allow_none=True, metadata={"description": "The refiner, if any."})

    @post_dump
    def _drop_absent(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # A text-to-image result keeps the keys it always had (none of these is a request field).
        return {k: v for k, v in data.items() if v is not None or k not in _ABSENT_WHEN_NONE}


_ABSENT_WHEN_NONE = ("init_image", "hires", "refiner")


class GenerateResponseSchema(Schema):
    """The JSON answer of the generate endpoints."""

    image = fields.String(required=True, metadata={"description": "The first image, base64."})
    images = fields.List(
        fields.String(), required=True, metadata={"description": "Every image, base64, in order."}
    )
    seed = fields.Integer(required=True, metadata={"description": "The first image's seed."})
    seeds = fields.List(fields.Integer(), required=True, metadata={"description": "Each seed."})
    model = fields.String(required=True)
    media_type = fields.String(required=True, metadata={"description": "e.g. image/png"})
    parameters = fields.Nested(ParametersSchema, required=True)
    info = fields.Dict(
        keys=fields.String(),
        metadata={
            "description": "How the images were drawn: task (txt2img, img2img, inpaint), "
            "steps_run (img2img, inpainting, hires fix) and inpaint_mode (inpainting)."
        },
    )
    generation_time = fields.Float(
        required=True, metadata={"description": "Seconds the pipeline ran."}
    )
    # The shape some existing clients read: {"message": ..., "image_data": <base64>}.
    message = fields.String(required=True)
    image_data = fields.String(
        required=True, metadata={"description": "Same as image, for clients that read image_data."}
    )


def dump_result(result: GenerationResult) -> dict[str, Any]:
    """The JSON body for `result`."""
    images = [b64(image.data) for image in result.images]
    return GenerateResponseSchema().dump(
        {
            "image": images[0],
            "images": images,
            "seed": result.seed,
            "seeds": result.seeds,
            "model": result.model,
            "media_type": result.images[0].media_type,
            "parameters": result.parameters(),
            "info": result.notes,
            "generation_time": round(result.generation_seconds, 3),
            "message": "Image generated successfully",
            "image_data": images[0],
        }
    )
