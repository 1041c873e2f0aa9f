"""How many denoising steps a request runs, before it runs (torch-free: jobs and views use it).

diffusers' img2img and inpaint pipelines skip the first `steps - int(steps * strength)` steps of
the schedule (`get_timesteps`): strength 0.5 at 20 steps runs 10. The step callback then reports
the real count (`pipeline.num_timesteps`), which is the same for first-order schedulers; a
second-order one (Heun, DPM2) reports its model evaluations instead, as it does for txt2img.
"""

from __future__ import annotations

from typing import Any

from backend.model.types import GenerationRequest


def strength_steps(steps: int, strength: float) -> int:
    """The steps an img2img/inpaint pass of `steps` at `strength` runs, as diffusers computes.

    0 means none run: the engine then returns the input images as they are (see
    `image_tasks.unchanged`), because diffusers refuses a pass of zero steps.
    """
    return min(int(steps * strength), steps)


def planned_steps(request: GenerationRequest) -> int:
    """The progress total a request starts with: every pass it will run."""
    return planned_from_values(request.steps, request.init_image, request.hires)


def planned_from_values(steps: int, init_image: Any, hires: Any) -> int:
    """`planned_steps` from a request's fields, objects or `to_dict` dicts alike (so the API
    process of the scale-out mode never decodes images to show a total)."""

    def field(value: Any, name: str) -> Any:
        return value[name] if isinstance(value, dict) else getattr(value, name)

    if init_image:
        return strength_steps(steps, float(field(init_image, "strength")))
    total = steps
    if hires:
        second = int(field(hires, "steps")) or steps
        total += strength_steps(second, float(field(hires, "strength")))
    return total
