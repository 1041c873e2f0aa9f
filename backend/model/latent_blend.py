"""Mask blending in latent space for base models diffusers' inpaint pipeline refuses.

diffusers' SD/SDXL inpaint pipelines take a UNet of 4 input channels (blending) or 9 (a
dedicated inpainting UNet). A base model with other latents (the trained demo's 8) is inpainted
here the same way through its img2img pipeline: after every step the latents outside the mask
are replaced by the input image's latents noised to the next step's level, so only the masked
area is denoised freely; the last step leaves the clean input latents outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from backend.model.errors import ImageTaskError

LatentHook = Callable[[Any, int, Any, Any], Any]  # (pipeline, step, timestep, latents) -> latents
_NOISE_SEED_OFFSET = 0x5EED  # the blend's noise differs from the pipeline's own


def needs_blending(pipeline: Any) -> bool:
    """Whether `pipeline`'s UNet is one diffusers' inpaint pipeline cannot drive (not 4 or 9);
    ImageTaskError for an SD3 transformer it cannot drive (not 16 or 33: the random demo's)."""
    unet = getattr(pipeline, "unet", None)
    if unet is not None:
        return unet.config.in_channels not in (4, 9)
    transformer = getattr(pipeline, "transformer", None)
    is_sd3 = type(transformer).__name__ == "SD3Transformer2DModel"
    if is_sd3 and transformer.config.in_channels not in (16, 33):
        raise ImageTaskError(
            "This SD3 model's transformer takes "
            f"{transformer.config.in_channels} latent channels; diffusers inpaints SD3 "
            "models of 16 (or 33, inpainting) only."
        )
    return False


def blender(
    pipeline: Any, images: Sequence[Image.Image], masks: Sequence[Image.Image], seeds: list[int]
) -> LatentHook:
    """A step hook keeping the latents outside each image's mask on the input image's."""
    import torch

    vae = pipeline.vae
    width, height = images[0].size
    pixels = pipeline.image_processor.preprocess(list(images), height=height, width=width)
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    clean = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
    scale = pipeline.vae_scale_factor
    size = (width // scale, height // scale)
    weights = np.stack(
        [
            np.asarray(mask.resize(size, Image.Resampling.BILINEAR), np.float32) / 255
            for mask in masks
        ]
    )
    mask = torch.from_numpy(weights)[:, None]
    noise = torch.cat(
        [
            torch.randn(
                (1, *clean.shape[1:]),
                generator=torch.Generator("cpu").manual_seed(seed + _NOISE_SEED_OFFSET),
            )
            for seed in seeds
        ]
    )

    def hook(pipeline: Any, step: int, _timestep: Any, latents: Any) -> Any:
        image = clean.to(latents.device, latents.dtype)
        keep = mask.to(latents.device, latents.dtype)
        remaining = pipeline.scheduler.timesteps[-pipeline.num_timesteps :]
        if step + 1 < len(remaining):
            following = remaining[step + 1 : step + 2]
            image = pipeline.scheduler.add_noise(
                image, noise.to(latents.device, latents.dtype), following
            )
        return keep * latents + (1 - keep) * image

    return hook
