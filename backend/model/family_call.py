"""What differs between the families' pipeline calls, beyond their text arguments.

Kept apart from pipeline_call.py so each family's quirk is stated once, with its reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def callback_arguments(pipeline: Any, callback: Callable[..., dict]) -> dict[str, Any]:
    """The step-end callback as `pipeline` takes it.

    PixArt-Σ's call has only the older `callback(step, timestep, latents)`: progress is reported
    the same way, but its loop never checks `_interrupt`, so a cancelled PixArt-Σ request runs
    its remaining steps (its images are then dropped like any cancelled request's).
    """
    if "callback_on_step_end" in inspect.signature(pipeline.__call__).parameters:
        return {"callback_on_step_end": callback}

    def old_style(step: int, timestep: Any, latents: Any) -> None:
        callback(pipeline, step, timestep, {"latents": latents})

    return {"callback": old_style, "callback_steps": 1}


def set_vae_tiling(vae: Any, tile: bool) -> None:
    """Tile the VAE's decoding, or not, where the VAE can (every diffusers VAE so far can)."""
    method = getattr(vae, "enable_tiling" if tile else "disable_tiling", None)
    if method is not None:
        method()
