"""Schemas of the generate endpoint: the request it validates and the JSON it answers with."""

from __future__ import annotations

import base64
import difflib
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from backend.config import Limits, ModelDefaults
from backend.model.types import GenerationRequest, GenerationResult
from backend.view.fields import WholeNumber

MIN_SIDE = 64
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 30.0
# Alias -> canonical name. Both spellings are common in existing clients.
ALIASES = {"num_inference_steps": "steps", "cfg_scale": "guidance_scale"}


class GenerateRequestSchema(Schema):
    """`POST /image/generate` body -> `GenerationRequest`, with the model's defaults filled in.

    Optional fields accept `null` as "use the default", as clients generated from OpenAPI send it.
    """

    class Meta:
        unknown = RAISE  # an unknown field is nearly always a typo; silently ignoring it misleads

    prompt = fields.String(required=True, metadata={"description": "What to draw."})
    negative_prompt = fields.String(
        allow_none=True, metadata={"description": "What to keep out of the image."}
    )
    width = WholeNumber(allow_none=True, metadata={"description": "Pixels; a multiple of 8."})
    height = WholeNumber(allow_none=True, metadata={"description": "Pixels; a multiple of 8."})
    steps = WholeNumber(allow_none=True, metadata={"description": "Denoising steps."})
    num_inference_steps = WholeNumber(allow_none=True, metadata={"description": "Alias of steps."})
    guidance_scale = fields.Float(
        allow_none=True,
        validate=validate.Range(0.0, MAX_GUIDANCE),
        metadata={"description": "How strictly to follow the prompt (0 turns guidance off)."},
    )
    cfg_scale = fields.Float(
        allow_none=True,
        validate=validate.Range(0.0, MAX_GUIDANCE),
        metadata={"description": "Alias of guidance_scale."},
    )
    seed = WholeNumber(
        allow_none=True,
        validate=validate.Range(-1, MAX_SEED),
        metadata={"description": "Same seed, same image; -1 or absent for a random one."},
    )

    def __init__(
        self, *, limits: Limits, defaults: ModelDefaults, size_multiple: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        self.defaults = defaults
        self.size_multiple = size_multiple

    @pre_load
    def _reject_unknown_with_suggestions(self, data: Any, **_: Any) -> Any:
        """Name the likely intended field, which marshmallow's bare 'Unknown field.' does not."""
        if not isinstance(data, dict):
            return data
        known = [field.data_key or name for name, field in self.load_fields.items()]
        errors = {}
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(known)}."
                errors[str(key)] = [f"Unknown field.{hint}"]
        if errors:
            raise ValidationError(errors)
        return data

    @validates("prompt", "negative_prompt")
    def _check_text(self, value: str | None, data_key: str) -> None:
        if value is None:  # only negative_prompt may be null (prompt's field refuses it)
            return
        if data_key == "prompt" and not value.strip():
            raise ValidationError("Must not be empty.")
        if len(value) > self.limits.max_prompt_length:
            raise ValidationError(
                f"Longer than the maximum of {self.limits.max_prompt_length} characters."
            )

    @validates("width", "height")
    def _check_side(self, value: int | None, data_key: str) -> None:
        if value is None:
            return
        maximum = self.limits.max_width if data_key == "width" else self.limits.max_height
        if not MIN_SIDE <= value <= maximum:
            raise ValidationError(f"Must be between {MIN_SIDE} and {maximum}.")
        if value % self.size_multiple:
            raise ValidationError(f"Must be a multiple of {self.size_multiple}.")

    @validates("steps", "num_inference_steps")
    def _check_steps(self, value: int | None, data_key: str) -> None:
        if value is not None and not 1 <= value <= self.limits.max_steps:
            raise ValidationError(f"Must be between 1 and {self.limits.max_steps}.")

    @validates_schema
    def _check_combination(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        for alias, canonical in ALIASES.items():
            given = data.get(alias), data.get(canonical)
            if None not in given and given[0] != given[1]:
                errors[alias] = [f"Conflicts with '{canonical}'; send only one of them."]
        width, height = self._size(data)
        if width * height > self.limits.max_pixels:
            message = (
                f"{width}x{height} is {width * height} pixels, more than the limit of "
                f"{self.limits.max_pixels}."
            )
            errors["width"] = errors["height"] = [message]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _to_request(self, data: dict[str, Any], **_: Any) -> GenerationRequest:
        width, height = self._size(data)
        seed = _first_given(data, "seed", default=-1)
        return GenerationRequest(
            prompt=data["prompt"],
            negative_prompt=_first_given(data, "negative_prompt", default=""),
            width=width,
            height=height,
            steps=_first_given(data, "steps", "num_inference_steps", default=self.defaults.steps),
            guidance_scale=_first_given(
                data, "guidance_scale", "cfg_scale", default=self.defaults.guidance_scale
            ),
            seed=None if seed == -1 else seed,
        )

    def _size(self, data: dict[str, Any]) -> tuple[int, int]:
        return (
            _first_given(data, "width", default=self.defaults.width),
            _first_given(data, "height", default=self.defaults.height),
        )


def _first_given(data: dict[str, Any], *names: str, default: Any) -> Any:
    """The value of the first of `names` present and not null, else `default`."""
    return next((data[name] for name in names if data.get(name) is not None), default)


class ParametersSchema(Schema):
    """The exact parameters a result was made with: sending them again reproduces it."""

    prompt = fields.String()
    negative_prompt = fields.String()
    width = fields.Integer()
    height = fields.Integer()
    steps = fields.Integer()
    guidance_scale = fields.Float()
    seed = fields.Integer()
    model = fields.String()


class GenerateResponseSchema(Schema):
    """The JSON answer of the generate endpoint (for clients that ask for JSON)."""

    image = fields.Function(
        lambda result: base64.b64encode(result.images[0].data).decode("ascii"),
        metadata={"description": "The image, base64-encoded PNG."},
    )
    seed = fields.Integer()
    model = fields.String()
    parameters = fields.Function(
        lambda result: ParametersSchema().dump(result.parameters()),
    )
    generation_time = fields.Function(
        lambda result: round(result.generation_seconds, 3),
        metadata={"description": "Seconds the pipeline ran."},
    )


def dump_result(result: GenerationResult) -> dict[str, Any]:
    """The JSON body for `result`."""
    return GenerateResponseSchema().dump(result)
