"""Schemas of the AUTOMATIC1111-compatible endpoints (`/sdapi/v1/...`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from backend.model import schedulers
from backend.model.service import ModelInfo
from backend.view import a1111_hires, image_rules
from backend.view.a1111_common import A1111Command, A1111GenerationSchema
from backend.view.a1111_info import A1111ImagesResponseSchema
from backend.view.a1111_options import SCHEDULE_TYPES
from backend.view.fields import StrictBoolean, WholeNumber


class Txt2ImgRequestSchema(A1111GenerationSchema):
    """`POST /sdapi/v1/txt2img`: the subset real clients rely on, and the hires fix."""

    enable_hr = StrictBoolean(allow_none=True, metadata={"description": "The hires fix."})
    hr_scale = fields.Float(allow_none=True, validate=image_rules.HR_SCALE_RANGE)
    hr_resize_x = WholeNumber(allow_none=True, metadata={"description": "0: hr_scale decides."})
    hr_resize_y = WholeNumber(allow_none=True, metadata={"description": "0: hr_scale decides."})
    hr_upscaler = fields.String(
        allow_none=True, metadata={"description": "Latent (and its variants), Lanczos, Nearest"}
    )
    hr_second_pass_steps = WholeNumber(
        allow_none=True, validate=validate.Range(0), metadata={"description": "0: steps."}
    )
    firstphase_width = WholeNumber(allow_none=True, metadata={"description": "Old API; 0: none."})
    firstphase_height = WholeNumber(allow_none=True, metadata={"description": "Old API; 0: none."})
    # The second pass runs as the first: these are accepted empty or equal to the first's.
    hr_checkpoint_name = fields.String(allow_none=True)
    hr_sampler_name = fields.String(allow_none=True)
    hr_scheduler = fields.String(allow_none=True)
    hr_prompt = fields.String(allow_none=True)
    hr_negative_prompt = fields.String(allow_none=True)
    hr_cfg = fields.Float(allow_none=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        limits = self.limits
        for name, most in (("hr_resize_x", limits.max_width), ("hr_resize_y", limits.max_height)):
            self.bound(name, validate.Range(0, most, error="Must be between {min} and {max}."))
        self.bound("firstphase_width", validate.Range(0, limits.max_width))
        self.bound("firstphase_height", validate.Range(0, limits.max_height))

    @validates_schema
    def _check_hires(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("enable_hr"):
            return
        model = self._model(data)
        problems = a1111_hires.second_pass_problems(self, data, model)
        first = a1111_hires.first_pass_size(data, *self._size(data))
        sizes = self.size_problems(model, *first) if first != self._size(data) else {}
        for side, field in (("width", "firstphase_width"), ("height", "firstphase_height")):
            if side in sizes:
                problems[field] = sizes[side]
        if problems:
            raise ValidationError(problems)

    @post_load
    def _to_command(self, data: dict[str, Any], **_: Any) -> A1111Command:
        model = self._model(data)
        width, height = self._size(data)
        first, hires, extra = (width, height), None, {}
        if data.get("enable_hr"):
            first, hires, extra = a1111_hires.plan(self, data, model, width, height)
        request = replace(self.base_request(data, *first), hires=hires)
        parameters = self.base_parameters(data, request, width, height)
        extra.update(self.refiner_extra(request))
        return A1111Command(
            request, parameters["n_iter"], data.get("send_images") is not False, parameters, extra
        )


# The txt2img answer's schema (img2img's is the same).
Txt2ImgResponseSchema = A1111ImagesResponseSchema


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
