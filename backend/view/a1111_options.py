"""AUTOMATIC1111's `override_settings` that change a txt2img call: model, clip skip and VAE."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from backend.view.fields import WholeNumber
from backend.view.rules import CLIP_SKIP_RANGE, GenerationSchema


class OverrideSettingsSchema(Schema):
    """The overrides A1111 clients use to pick a model, clip skip and VAE; others ignored."""

    class Meta:
        unknown = EXCLUDE

    sd_model_checkpoint = fields.String(allow_none=True)
    CLIP_stop_at_last_layers = WholeNumber(allow_none=True, validate=CLIP_SKIP_RANGE)
    sd_vae = fields.String(allow_none=True, metadata={"description": "Automatic, None or a VAE"})


def clip_skip_of(data: dict[str, Any]) -> int | None:
    """The clip skip a txt2img body asks for: top-level `clip_skip`, or A1111's override."""
    if data.get("clip_skip") is not None:
        return data["clip_skip"]
    return (data.get("override_settings") or {}).get("CLIP_stop_at_last_layers")


def clip_skip_problems(
    schema: GenerationSchema, data: dict[str, Any], model: str | None
) -> dict[str, Any]:
    """Errors, per field, of the clip skip a txt2img body asks for (none: {})."""
    overrides = data.get("override_settings") or {}
    given = data.get("clip_skip"), overrides.get("CLIP_stop_at_last_layers")
    if None not in given and given[0] != given[1]:
        return {"clip_skip": ["Conflicts with override_settings.CLIP_stop_at_last_layers."]}
    problem = schema.clip_skip_problem(model, clip_skip_of(data))
    if problem is None:
        return {}
    if given[0] is None:
        return {"override_settings": {"CLIP_stop_at_last_layers": [problem]}}
    return {"clip_skip": [problem]}
