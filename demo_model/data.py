"""Scenes as tensors: images in [-1, 1], captions as token ids, for the training loops."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from demo_model.scenes import Scene, caption, random_scene, render


def scenes(rng: random.Random, count: int) -> list[Scene]:
    """`count` training scenes from `rng`."""
    return [random_scene(rng) for _ in range(count)]


def pixels(batch: list[Scene], size: int) -> torch.Tensor:
    """The scenes drawn at `size` x `size`, as a (N, 3, size, size) tensor in [-1, 1]."""
    array = np.stack([np.asarray(render(scene, size)) for scene in batch])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def token_ids(tokenizer: Any, captions: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's length, exactly as the pipeline pads a prompt."""
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def captions(rng: random.Random, batch: list[Scene], drop: float) -> list[str]:
    """A fresh caption per scene; `drop` of them empty, so guidance has an unconditional model."""
    return ["" if rng.random() < drop else caption(scene, rng) for scene in batch]
