"""Clip skip: which hidden layer of the CLIP text encoders conditions the image.

Numbered as AUTOMATIC1111 numbers it (`CLIP_stop_at_last_layers`): 1 is the encoder's last layer
(no skip), 2 the one before it, and so on. diffusers' own `clip_skip` counts skipped layers from
0, so diffusers' value is this one minus 1.

SD 1.x/2.x read the last layer: clip skip N reads layer -N and applies the final layer norm, as
AUTOMATIC1111 does. SDXL and SD3 were trained on the penultimate layer already, so 1 and 2 both
mean their usual conditioning (AUTOMATIC1111 ignores the setting for them); N > 2 reads layer -N
of each CLIP encoder. Torch-free: the schemas bound the value from the folders' configs.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.model.catalogue import Family

MAX_CLIP_SKIP = 12
# Families whose text encoders are CLIP (the only ones clip skip means anything for). A family
# without CLIP encoders (FLUX's T5 alone, PixArt, Sana) stays out, and requests for it with a
# clip_skip above 1 are refused by the schemas.
CLIP_FAMILIES = frozenset({Family.SD, Family.SDXL, Family.SD3})
# Families that read the penultimate layer already (clip skip 2 is their default).
_PENULTIMATE = frozenset({Family.SDXL, Family.SD3})
_CLIP_FOLDERS = ("text_encoder", "text_encoder_2")


def effective(family: Family, clip_skip: int | None) -> int | None:
    """The clip skip that changes anything for `family`; None when its usual layer is read."""
    usual = 2 if family in _PENULTIMATE else 1
    if clip_skip is None or clip_skip <= usual:
        return None
    return clip_skip


def penultimate_default(family: Family) -> bool:
    """Whether `family` reads the penultimate layer without any clip skip."""
    return family in _PENULTIMATE


def layer_limit(folder: Path) -> int | None:
    """The fewest hidden layers among the CLIP text encoders of a diffusers folder, from their
    config.json files (None when none can be read, such as a single-file checkpoint)."""
    counts = []
    for name in _CLIP_FOLDERS:
        try:
            config = json.loads((folder / name / "config.json").read_text())
        except (OSError, ValueError):
            continue
        layers = config.get("num_hidden_layers") if isinstance(config, dict) else None
        if isinstance(layers, int) and layers > 0:
            counts.append(layers)
    return min(counts) if counts else None


def problem(family: Family, folder: Path, clip_skip: int) -> str | None:
    """Why `clip_skip` cannot be used with the model in `folder`, or None if it can."""
    if clip_skip <= 1:
        return None
    if family not in CLIP_FAMILIES:
        return (
            f"Clip skip needs CLIP text encoders; '{family}' models have none. Use 1 or leave "
            "it out."
        )
    limit = layer_limit(folder)
    if limit is not None and clip_skip > limit:
        return f"This model's text encoder has {limit} layers; clip skip must be at most {limit}."
    return None
