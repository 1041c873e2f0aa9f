"""Making a loaded pipeline faster: memory format, fused projections, a tiny VAE, torch.compile.

Each knob is a setting (see docs/performance.md, "Speed settings") and is on by default only on
the devices where `make bench-speed` measured a gain. Everything here runs on the device's
worker thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.config import SpeedSettings
from backend.model.catalogue import Family, ModelDefaults
from backend.model.errors import ModelFolderError
from backend.model.registry import check_tiny_vae, display_path

log = logging.getLogger(__name__)

# Measured by `make bench-speed` on the full-size SD-Turbo architecture (docs/performance.md):
# on the CPU only the VAE gains from channels_last (the UNet loses), and fused QKV does not pay
# for the second copy of the attention weights it keeps. No GPU was measured yet, so nothing is
# switched on there by default.
_AUTO_CHANNELS_LAST = {"cpu": ("vae",), "cuda": ()}
_AUTO_FUSE_QKV = {"cpu": False, "cuda": False}


@dataclass(frozen=True)
class Applied:
    """What `optimize` did to a pipeline, for the log and /health."""

    channels_last: tuple[str, ...] = ()
    fused_qkv: tuple[str, ...] = ()
    compiled: tuple[str, ...] = ()
    tiny_vae: str | None = None
    warmup_seconds: float | None = None

    def describe(self) -> str:
        """One line for the log."""
        parts = [
            f"channels_last={','.join(self.channels_last) or 'none'}",
            f"fused_qkv={','.join(self.fused_qkv) or 'none'}",
            f"compiled={','.join(self.compiled) or 'none'}",
            f"tiny_vae={self.tiny_vae or 'no'}",
        ]
        return " ".join(parts)


def channels_last_components(speed: SpeedSettings, device: torch.device) -> tuple[str, ...]:
    """The components stored channels_last on `device` (CHANNELS_LAST, auto: measured defaults)."""
    if speed.channels_last is not None:
        return speed.channels_last
    return _AUTO_CHANNELS_LAST.get(device.type, ())


def fuses_qkv(speed: SpeedSettings, device: torch.device) -> bool:
    """Whether attention projections are fused on `device` (FUSE_QKV, auto: measured defaults)."""
    if speed.fuse_qkv == "auto":
        return _AUTO_FUSE_QKV.get(device.type, False)
    return speed.fuse_qkv == "true"


def optimize(
    pipeline: Any, family: Family, device: torch.device, speed: SpeedSettings, models_dir: Path
) -> Applied:
    """Apply the speed settings to a freshly loaded pipeline; returns what was done."""
    tiny = _swap_in_tiny_vae(pipeline, family, models_dir) if speed.tiny_vae else None
    layout = tuple(
        name
        for name in channels_last_components(speed, device)
        if _component(pipeline, name) is not None
    )
    for name in layout:
        # Convolutions run faster with NHWC weights where the backend has NHWC kernels; inputs
        # follow the weights' format, so the pipeline's own tensors need no change.
        _component(pipeline, name).to(memory_format=torch.channels_last)
    fused = _fuse_qkv(pipeline) if fuses_qkv(speed, device) else ()
    compiled = tuple(name for name in speed.compile if _compile(pipeline, name, speed.compile_mode))
    return Applied(layout, fused, compiled, tiny)


def warm_up(pipeline: Any, defaults: ModelDefaults) -> float:
    """Compile before the first request instead of during it; returns the seconds it took.

    Two generations at the model's default size, of one image and of two: torch.compile treats
    a dimension of size 1 as a constant, so the batch of two yields the graph that serves the
    other batch sizes (and guidance's doubled batch). Other image sizes usually reuse these
    graphs too (`dynamic=True`), but a size far from the default, or a non-square one, can
    still compile once, in the first request that asks for it.
    """
    started = time.perf_counter()
    with torch.inference_mode():
        for images in (1, 2):
            pipeline(
                prompt="warm-up",
                width=defaults.width,
                height=defaults.height,
                num_inference_steps=1,  # the shapes, not the step count, decide what compiles
                guidance_scale=0.0,
                num_images_per_prompt=images,
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="pil",
            )
    return time.perf_counter() - started


def _component(pipeline: Any, name: str) -> Any:
    return getattr(pipeline, name, None)


def _fuse_qkv(pipeline: Any) -> tuple[str, ...]:
    fused = []
    for name in ("unet", "transformer", "vae"):
        module = _component(pipeline, name)
        if module is None or not hasattr(module, "fuse_qkv_projections"):
            continue
        if getattr(module, "config", {}).get("dual_attention_layers"):
            # SD3.5 Medium's second, self-only attention gets the joint fused processor, which
            # then fails on its missing context (diffusers 0.42): left unfused.
            log.warning("FUSE_QKV: %s left unfused: it has dual attention layers", name)
            continue
        try:
            module.fuse_qkv_projections()
        except ValueError as error:  # e.g. added KV projections: diffusers cannot fuse those
            log.warning("FUSE_QKV: %s left unfused: %s", name, error)
            continue
        fused.append(name)
    return tuple(fused)


def _compile(pipeline: Any, name: str, mode: str) -> bool:
    module = _component(pipeline, name)
    if module is None:
        return False
    # In place (nn.Module.compile): the pipeline keeps its own module objects, so diffusers'
    # config lookups, offload hooks and dtype checks see what they expect. For the VAE only
    # the decoder runs in text-to-image. dynamic=True: a server sees many sizes, and a graph
    # specialized to one would recompile (tens of seconds) inside the request of each new one.
    target = module.decoder if name == "vae" else module
    target.compile(mode=mode, dynamic=True)
    return True


def _swap_in_tiny_vae(pipeline: Any, family: Family, models_dir: Path) -> str:
    """Replace the pipeline's VAE by the family's AutoencoderTiny from MODELS_DIR."""
    from diffusers import AutoencoderTiny

    folder = check_tiny_vae(family, models_dir)
    shown = display_path(folder)
    vae = pipeline.vae
    tiny = AutoencoderTiny.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, dtype=vae.dtype
    )
    if tiny.config.latent_channels != vae.config.latent_channels:
        raise ModelFolderError(
            f"TINY_VAE: '{shown}' decodes {tiny.config.latent_channels}-channel latents, but this "
            f"{family.value} model makes {vae.config.latent_channels}-channel ones."
        )
    # A decoder of another scale would draw the latents at twice (or half) the asked-for size.
    halvings = len(tiny.config.decoder_block_out_channels) - 1
    tiny_scale = tiny.config.upsampling_scaling_factor**halvings
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if tiny_scale != scale:
        raise ModelFolderError(
            f"TINY_VAE: '{shown}' draws {tiny_scale} pixels per latent pixel, but this "
            f"{family.value} model's VAE draws {scale}."
        )
    pipeline.vae = tiny.to(vae.device)
    return shown
