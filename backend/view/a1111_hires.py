"""AUTOMATIC1111's hires fix fields on txt2img: what they ask for, and what we refuse of them."""

from __future__ import annotations

from typing import Any

from backend.model import schedulers
from backend.model.types import HiresOptions
from backend.view import image_rules
from backend.view.a1111_common import A1111GenerationSchema, model_from_title

DEFAULT_STRENGTH = 0.75  # A1111's txt2img `denoising_strength` default
# Second-pass choices A1111 offers that mean "as the first pass".
_SAME = {"", "use same checkpoint", "use same sampler", "use same scheduler"}


def _same(value: Any) -> bool:
    return value is None or str(value).strip().lower() in _SAME


def second_pass_problems(
    schema: A1111GenerationSchema, data: dict[str, Any], model: str | None
) -> dict[str, list[str]]:
    """The hr_* fields that ask for a second pass unlike the first, which we cannot draw."""
    problems: dict[str, list[str]] = {}
    unlike = "The hires pass runs with the first pass's {}: leave it empty or give the same."
    spec = schema.spec(model)
    if not _same(name := data.get("hr_checkpoint_name")) and model_from_title(name) != spec.name:
        problems["hr_checkpoint_name"] = [unlike.format("checkpoint")]
    if not _same(name := data.get("hr_sampler_name")):
        given = schedulers.find(name, spec.family)
        first = data.get("sampler_name") or data.get("sampler_index")
        first_choice = schedulers.find(first, spec.family) if first else None
        if given is None or first_choice is None or given.name != first_choice.name:
            problems["hr_sampler_name"] = [unlike.format("sampler")]
    hr_schedule = data.get("hr_scheduler")
    if not _same(hr_schedule) and (
        hr_schedule.lower() != (data.get("scheduler") or "automatic").lower()
    ):
        problems["hr_scheduler"] = [unlike.format("schedule type")]
    for field, first_field in (("hr_prompt", "prompt"), ("hr_negative_prompt", "negative_prompt")):
        text = data.get(field)
        if text and text != (data.get(first_field) or ""):
            problems[field] = [unlike.format(first_field.replace("_", " "))]
    cfg = data.get("hr_cfg")
    first_cfg = data.get("cfg_scale")
    if cfg is not None and cfg != (
        spec.defaults.guidance_scale if first_cfg is None else first_cfg
    ):
        problems["hr_cfg"] = [unlike.format("cfg_scale")]
    return problems


def first_pass_size(data: dict[str, Any], width: int, height: int) -> tuple[int, int]:
    """The first pass's size: the old API's firstphase_width/height when given (then width and
    height are the final size, as A1111 reads them), else width x height."""
    if data.get("firstphase_width") or data.get("firstphase_height"):
        return data.get("firstphase_width") or width, data.get("firstphase_height") or height
    return width, height


def plan(
    schema: A1111GenerationSchema, data: dict[str, Any], model: str | None, width: int, height: int
) -> tuple[tuple[int, int], HiresOptions, dict[str, Any]]:
    """The first pass's size, the hires options, and A1111's infotext entries for them."""
    first = first_pass_size(data, width, height)
    resize_x, resize_y = data.get("hr_resize_x") or None, data.get("hr_resize_y") or None
    if first != (width, height):  # firstphase_*: width x height is the final size
        resize_x, resize_y = width, height
    label = data.get("hr_upscaler") or "Latent"
    # A1111's "None" upscaler resizes the image with Lanczos.
    upscaler = "Lanczos" if label.strip().lower() == "none" else label
    strength = data.get("denoising_strength")
    strength = DEFAULT_STRENGTH if strength is None else strength
    steps = data.get("hr_second_pass_steps") or None
    options = image_rules.hires(
        schema,
        model,
        *first,
        scale=data.get("hr_scale"),
        resize_x=resize_x,
        resize_y=resize_y,
        upscaler=upscaler,
        steps=steps,
        strength=strength,
    )
    extra: dict[str, Any] = {"Denoising strength": strength}
    if resize_x or resize_y:
        extra["Hires resize"] = f"{options.width}x{options.height}"
    else:
        extra["Hires upscale"] = 2.0 if data.get("hr_scale") is None else data["hr_scale"]
    if steps:
        extra["Hires steps"] = steps
    extra["Hires upscaler"] = label
    return first, options, extra
