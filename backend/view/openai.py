"""Schemas of the OpenAI-compatible endpoints (`/v1/images/generations`, `/v1/models`)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from backend.model import schedulers
from backend.model.service import ModelInfo
from backend.model.types import GenerationRequest, GenerationResult, OutputOptions
from backend.view.fields import WholeNumber
from backend.view.generate import b64
from backend.view.lora_tags import misplaced_tags
from backend.view.openai_stream import StreamFieldsSchema, streamed_request
from backend.view.rules import (
    MAX_GUIDANCE,
    MIN_SIDE,
    OUTPUT_FORMATS,
    SEED_RANGE,
    GenerationSchema,
    between,
)

MAX_N = 10  # OpenAI's own bound; MAX_IMAGES may lower it
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# OpenAI clients often hard-code OpenAI's model names: those mean "this server's default".
_OPENAI_MODEL = re.compile(r"^(dall-e-|gpt-image-)")


@dataclass(frozen=True)
class OpenAIImageCommand:
    """A validated OpenAI image request."""

    request: GenerationRequest
    output: OutputOptions
    stream: bool = False  # answer as Server-Sent Events (openai_stream.py)
    partial_images: int = 0
    quality: str = "auto"


class OpenAIImageRequestSchema(GenerationSchema, StreamFieldsSchema):
    """`POST /v1/images/generations`: OpenAI's fields, plus this server's own knobs."""

    class Meta:
        unknown = RAISE  # as OpenAI: "Unrecognized request argument supplied"

    prompt = fields.String(required=True)
    model = fields.String(
        allow_none=True,
        metadata={"description": "A model from GET /v1/models; dall-e-*/gpt-image-*: the default."},
    )
    n = WholeNumber(allow_none=True, metadata={"description": "Number of images."})
    size = fields.String(
        allow_none=True,
        validate=validate.Regexp(
            r"^(auto|\d{1,5}x\d{1,5})$", error="Must be WIDTHxHEIGHT or auto."
        ),
        metadata={"description": "WIDTHxHEIGHT (e.g. 512x512), or auto for the model's size."},
    )
    response_format = fields.String(
        allow_none=True,
        validate=validate.OneOf(
            ["b64_json"],
            error="Only b64_json is offered: this server returns images inline, not as URLs.",
        ),
    )
    output_format = fields.String(allow_none=True, validate=validate.OneOf(OUTPUT_FORMATS))
    output_compression = WholeNumber(allow_none=True, validate=between(0, 100))
    # Accepted so existing clients work; they do not change what a diffusion model draws.
    quality = fields.String(
        allow_none=True,
        validate=validate.OneOf(["auto", "standard", "hd", "low", "medium", "high"]),
    )
    style = fields.String(allow_none=True, validate=validate.OneOf(["vivid", "natural"]))
    moderation = fields.String(allow_none=True, validate=validate.OneOf(["auto", "low"]))
    background = fields.String(
        allow_none=True,
        validate=validate.OneOf(
            ["auto", "opaque"], error="Only opaque backgrounds are offered ('auto' or 'opaque')."
        ),
    )
    user = fields.String(allow_none=True)
    # This server's knobs.
    negative_prompt = fields.String(allow_none=True)
    seed = WholeNumber(allow_none=True, validate=SEED_RANGE)
    steps = WholeNumber(allow_none=True)
    guidance_scale = fields.Float(allow_none=True, validate=between(0.0, MAX_GUIDANCE))
    scheduler = fields.String(allow_none=True, validate=validate.OneOf(schedulers.SCHEDULER_NAMES))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound("n", between(1, min(MAX_N, self.limits.max_images)))
        self.bound("steps", between(1, self.limits.max_steps))
        self.bound_text("prompt", "negative_prompt")
        self.bound("prompt", validate.Regexp(r"[\s\S]*\S", error="Must not be empty."))

    @validates_schema
    def _check_combination(self, data: dict[str, Any], **_: Any) -> None:
        model = self._model(data)
        errors: dict[str, list[str]] = dict(misplaced_tags(data))
        size = self._size(data)
        if size is None:
            errors["size"] = ["Must be WIDTHxHEIGHT (for example 512x512) or auto."]
        else:
            width, height = size
            if not (MIN_SIDE <= width <= self.limits.max_width) or not (
                MIN_SIDE <= height <= self.limits.max_height
            ):
                errors["size"] = [
                    f"Width must be between {MIN_SIDE} and {self.limits.max_width}, height "
                    f"between {MIN_SIDE} and {self.limits.max_height}."
                ]
            else:
                problems = self.size_problems(model, width, height)
                if problems:
                    errors["size"] = sorted({m for messages in problems.values() for m in messages})
        if data.get("scheduler") and (problem := self.scheduler_problem(model, data["scheduler"])):
            errors["scheduler"] = [problem]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _to_command(self, data: dict[str, Any], **_: Any) -> OpenAIImageCommand:
        model = self._model(data)
        width, height = self._size(data) or (None, None)
        request = self.make_request(
            model,
            prompt=data["prompt"],
            negative_prompt=data.get("negative_prompt"),
            width=width,
            height=height,
            steps=data.get("steps"),
            guidance_scale=data.get("guidance_scale"),
            seed=data.get("seed"),
            num_images=data.get("n"),
            scheduler=data.get("scheduler"),
        )
        output = OutputOptions(data.get("output_format") or "png", data.get("output_compression"))
        if not data.get("stream"):
            return OpenAIImageCommand(request, output)
        request, partial_images = streamed_request(request, data)
        quality = data.get("quality") or "auto"
        return OpenAIImageCommand(request, output, True, partial_images, quality)

    def _model(self, data: dict[str, Any]) -> str | None:
        model = data.get("model")
        return None if model is None or _OPENAI_MODEL.match(model) else model

    def _size(self, data: dict[str, Any]) -> tuple[int, int] | None:
        """(width, height) from `size`; the model's own for auto or absent; None if malformed."""
        size = data.get("size")
        if size in (None, "auto"):
            defaults = self.spec(self._model(data)).defaults
            return defaults.width, defaults.height
        match = _SIZE.match(size)
        return (int(match[1]), int(match[2])) if match else None


class OpenAIImageSchema(Schema):
    """One generated image, as OpenAI returns it."""

    b64_json = fields.String(required=True)
    seed = fields.Integer(
        required=True, metadata={"description": "This server's addition: the image's seed."}
    )


class OpenAIImagesResponseSchema(Schema):
    """The answer of `POST /v1/images/generations`."""

    created = fields.Integer(required=True)
    data = fields.List(fields.Nested(OpenAIImageSchema), required=True)
    output_format = fields.String(required=True)
    size = fields.String(required=True)


def dump_images(result: GenerationResult, output_format: str) -> dict[str, Any]:
    """OpenAI's images response for `result`."""
    request = result.request
    return OpenAIImagesResponseSchema().dump(
        {
            "created": int(time.time()),
            "data": [{"b64_json": b64(image.data), "seed": image.seed} for image in result.images],
            "output_format": output_format,
            "size": f"{request.width}x{request.height}",
        }
    )


class OpenAIModelSchema(Schema):
    """A model, as OpenAI lists them."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("model"))
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)


class OpenAIModelListSchema(Schema):
    """The answer of `GET /v1/models`."""

    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(OpenAIModelSchema), required=True)


def dump_model(info: ModelInfo) -> dict[str, Any]:
    """OpenAI's model object for `info`."""
    return OpenAIModelSchema().dump(
        {"id": info.spec.name, "object": "model", "created": 0, "owned_by": "local"}
    )


def dump_model_list(infos: list[ModelInfo]) -> dict[str, Any]:
    """OpenAI's model list for the models that can be used now."""
    return OpenAIModelListSchema().dump(
        {"object": "list", "data": [dump_model(info) for info in infos if info.exists]}
    )


class OpenAIErrorDetailSchema(Schema):
    """OpenAI's error object."""

    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    code = fields.String(required=True, allow_none=True)


class OpenAIErrorSchema(Schema):
    """Every error under /v1/, in OpenAI's shape."""

    error = fields.Nested(OpenAIErrorDetailSchema, required=True)


_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
    504: "timeout",
    507: "out_of_memory",
}


def openai_error_body(status: int, message: str, details: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's error shape for a failure: the first offending field becomes `param`."""
    details = details or {}
    param = next((key for key in details if not key.startswith("_")), None)
    if "available" in details:  # an unknown model
        param, code = "model", "model_not_found"
    else:
        code = _ERROR_CODES.get(status, "server_error" if status >= 500 else "error")
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return OpenAIErrorSchema().dump(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}
    )
