"""AUTOMATIC1111's settings that change a generation: `override_settings` (model, clip skip, VAE)
and the sampler with its schedule type."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from backend.model import schedulers
from backend.model.catalogue import Family
from backend.view.fields import WholeNumber
from backend.view.rules import CLIP_SKIP_RANGE, GenerationSchema

# AUTOMATIC1111's "schedule type" (since 1.9); only these two change what our samplers do.
SCHEDULE_TYPES = {"automatic": "Automatic", "karras": "Karras"}


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


def sampler_of(data: dict[str, Any], family: Family) -> schedulers.SchedulerChoice | None:
    """The sampler a body asks for (sampler_name, else sampler_index), with its schedule type;
    ValueError says why it cannot be had."""
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
