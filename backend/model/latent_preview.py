"""Live previews: a small PNG of one request's current latents, drawn in the step callback.

The family's tiny VAE (an AutoencoderTiny folder named taesd, taesdxl, taesd3 or taef1 in
VAES_DIR, else in MODELS_DIR) decodes them when present, loaded once per device and kept;
otherwise a linear projection (`latent_rgb.py`) does, at the latents' own resolution.
Only requests that ask for previews reach this module: the others cost nothing.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

from backend.model.asset_files import read_json
from backend.model.job_record import JobPreview
from backend.model.latent_rgb import fitted_factors, project, unpack
from backend.model.registry import TINY_VAE_FOLDERS

log = logging.getLogger(__name__)

MAX_SIDE = 256  # pixels: a preview shows shapes, not details
MAX_IMAGES = 4  # a request of more images previews its first four, as a grid

_tiny: dict[tuple[str, str, str], Any] = {}  # (folder, device, dtype) -> AutoencoderTiny
_tiny_lock = threading.Lock()


def tiny_vae_folder(family: str, folders: tuple[Path | None, ...]) -> Path | None:
    """The family's AutoencoderTiny folder in the first of `folders` that holds one."""
    name = next((value for key, value in TINY_VAE_FOLDERS.items() if key.value == family), None)
    if name is None:
        return None
    for parent in folders:
        if parent is None:
            continue
        folder = parent / name
        config = read_json(folder / "config.json")
        tiny = config is not None and config.get("_class_name") == "AutoencoderTiny"
        if tiny and any(folder.glob("*.safetensors")):
            return folder
    return None


class Previewer:
    """Draws the previews of one pipeline call (one model, one device)."""

    def __init__(self, family: str, folders: tuple[Path | None, ...] = ()) -> None:
        self.family = family
        self.folder = tiny_vae_folder(family, folders)
        self.decoder = "tiny_vae" if self.folder is not None else "linear"

    def preview(
        self, pipeline: Any, latents: Any, size: tuple[int, int], step: int, total: int
    ) -> JobPreview:
        """A PNG of `latents` (one request's slice, several images as a grid) at `step`."""
        import torch

        width, height = size
        with torch.inference_mode():
            latents = unpack(latents[:MAX_IMAGES], width, height)
            rgb = self._decode(pipeline, latents)
            if rgb is None:
                self.decoder = "linear"
                fitted = fitted_factors(getattr(pipeline, "vae", None), latents.shape[1])
                rgb = project(latents, self.family, fitted)
        return _png(rgb, size, step, total)

    def _decode(self, pipeline: Any, latents: Any) -> Any:
        """RGB in [0, 1] by the tiny VAE, or None where it cannot (then the projection does)."""
        if self.folder is None:
            return None
        tiny = _load(self.folder, latents.device, latents.dtype)
        if tiny is None or tiny.config.latent_channels != latents.shape[1]:
            return None
        latents = _fit(latents, tiny)
        scaled = latents / tiny.config.scaling_factor  # as the pipeline would decode with it
        shift = getattr(tiny.config, "shift_factor", None)
        if shift:
            scaled = scaled + shift
        images = tiny.decode(scaled.to(tiny.dtype), return_dict=False)[0]
        return ((images.float() + 1) / 2).clamp(0, 1)


def _fit(latents: Any, tiny: Any) -> Any:
    """Latents shrunk (averaged) so the tiny VAE draws at most MAX_SIDE pixels a side: the
    decoder's cost grows with its output's pixels, and a preview shows no more anyway."""
    import torch

    config = tiny.config
    scale = config.upsampling_scaling_factor ** (len(config.decoder_block_out_channels) - 1)
    height, width = latents.shape[-2:]
    factor = MAX_SIDE / (max(height, width) * scale)
    if factor >= 1:
        return latents
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    return torch.nn.functional.interpolate(latents.float(), size=size, mode="area").to(
        latents.dtype
    )


def _load(folder: Path, device: Any, dtype: Any) -> Any:
    """The AutoencoderTiny of `folder` on `device`, loaded once; None if it cannot be."""
    key = (str(folder), str(device), str(dtype))
    with _tiny_lock:
        if key in _tiny:
            return _tiny[key]
        try:
            from diffusers import AutoencoderTiny

            tiny = AutoencoderTiny.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, torch_dtype=dtype
            ).to(device)
            tiny.requires_grad_(False)
        except Exception as error:  # a broken folder must not break the generation
            log.warning("tiny VAE %s unusable for previews (%s): linear previews", folder, error)
            tiny = None
        _tiny[key] = tiny
        return tiny


def _png(rgb: Any, size: tuple[int, int], step: int, total: int) -> JobPreview:
    """(N, 3, H, W) in [0, 1] as one PNG: a 2-column grid of images of the request's aspect
    (`size`), at most MAX_SIDE per side."""
    import torch
    from PIL import Image

    pixels = (rgb * 255).round().to("cpu", dtype=torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    # The projection draws a pixel per latent pixel: shown at the request's size (bounded).
    scale = min(1.0, MAX_SIDE / max(size))
    width, height = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
    images = [
        Image.fromarray(each).resize((width, height), Image.Resampling.BILINEAR) for each in pixels
    ]
    columns = min(2, len(images))
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (width * columns, height * rows))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    grid.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", compress_level=1)  # speed over a few hundred bytes
    return JobPreview(step, total, buffer.getvalue(), "image/png", grid.width, grid.height)
