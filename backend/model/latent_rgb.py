"""A fixed linear latent -> RGB projection: the cheapest live preview, good enough for shapes.

The factors are the ones other servers use (ComfyUI's `latent_rgb_factors`), fitted per latent
space on real VAE decodes: RGB = latents . factors + bias, in [-1, 1]. Latents of a channel count
no family has (the trained demo's 8) get factors fitted here once per VAE, by least squares on a
few small decodes of random latents; failing that, a generic projection stretched to the
image's range. torch is imported by the caller; these functions take and return tensors.
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any

log = logging.getLogger(__name__)

_SD = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SDXL = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)
_SD3 = (
    (-0.0922, -0.0175, 0.0749),
    (0.0311, 0.0633, 0.0954),
    (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496),
    (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427),
    (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268),
    (0.0922, 0.0988, 0.0951),
    (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895),
    (-0.0069, -0.0030, -0.0810),
    (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189),
)
_SD3_BIAS = (0.2394, 0.2135, 0.1925)
_FLUX = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
_FLUX_BIAS = (-0.0329, -0.0718, -0.0851)

# family -> (factors, bias); PixArt-Σ draws in SDXL's latent space. Keyed by the family's value
# so this module needs no import of the catalogue.
FACTORS: dict[str, tuple[tuple, tuple | None]] = {
    "sd": (_SD, None),
    "sdxl": (_SDXL, _SDXL_BIAS),
    "pixart": (_SDXL, _SDXL_BIAS),
    "sd3": (_SD3, _SD3_BIAS),
    "flux": (_FLUX, _FLUX_BIAS),
}


def unpack(latents: Any, width: int, height: int) -> Any:
    """FLUX's packed latents (B, patches, C*4) as (B, C, H, W), `width`/`height` giving the
    aspect; other layouts as they are."""
    if latents.ndim != 3:
        return latents
    batch, patches, packed = latents.shape
    rows = max(1, round(math.sqrt(patches * height / max(width, 1))))
    while patches % rows:  # a hires pass may differ from the asked aspect by a rounding
        rows -= 1
    cols = patches // rows
    latents = latents.view(batch, rows, cols, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, packed // 4, rows * 2, cols * 2)


# VAE module -> its fitted (weights C x 3, bias 3) on the CPU, or None where fitting failed
_fitted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fitted_factors(vae: Any, channels: int) -> tuple[Any, Any] | None:
    """Factors for `vae`'s latents, fitted once: least squares from 8 random 8x8 latents to
    their decodes averaged down to one pixel per latent pixel. None where it cannot decode."""
    if vae is None or getattr(vae.config, "latent_channels", None) != channels:
        return None
    if vae not in _fitted:
        _fitted[vae] = _fit(vae, channels)
    return _fitted[vae]


def _fit(vae: Any, channels: int) -> tuple[Any, Any] | None:
    import torch

    try:
        parameter = next(vae.parameters())
        latents = torch.randn(8, channels, 8, 8, generator=torch.Generator().manual_seed(0))
        scaled = latents / vae.config.scaling_factor + (getattr(vae.config, "shift_factor", 0) or 0)
        with torch.inference_mode():
            decoded = vae.decode(scaled.to(parameter.device, parameter.dtype), return_dict=False)
        pixels = decoded[0].float().cpu()
        pixels = torch.nn.functional.adaptive_avg_pool2d(pixels, latents.shape[-2:])
        inputs = latents.permute(0, 2, 3, 1).reshape(-1, channels)
        inputs = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1)
        targets = pixels.permute(0, 2, 3, 1).reshape(-1, 3)
        solution = torch.linalg.lstsq(inputs, targets).solution
    except Exception as error:  # an odd VAE: the generic projection will do
        log.warning("no latent preview factors for this VAE (%s): generic previews", error)
        return None
    return solution[:channels], solution[channels]


def project(latents: Any, family: str, fitted: tuple[Any, Any] | None = None) -> Any:
    """(B, C, H, W) latents as (B, 3, H, W) RGB in [0, 1], by the family's factors, else by
    `fitted` ones (`fitted_factors`), else a generic projection."""
    import torch

    latents = latents.float()
    channels = latents.shape[1]
    factors, bias = FACTORS.get(family, ((), None))
    weights = None
    if len(factors) == channels:
        weights = torch.tensor(factors, dtype=torch.float32)
        bias = torch.tensor(bias) if bias is not None else None
    elif fitted is not None:
        weights, bias = fitted
    if weights is not None:
        rgb = torch.einsum("bchw,cr->brhw", latents, weights.to(latents.device))
        if bias is not None:
            rgb = rgb + bias.to(latents.device).view(1, 3, 1, 1)
        return ((rgb + 1) / 2).clamp(0, 1)
    # Any other latent space: channel c leans towards colour c % 3, and each image is stretched
    # to its own range (the scale of unknown latents is unknown too).
    weights = torch.zeros(channels, 3, device=latents.device)
    for channel in range(channels):
        weights[channel, channel % 3] = 1.0
        weights[channel, (channel + 1) % 3] = 0.5
    rgb = torch.einsum("bchw,cr->brhw", latents, weights)
    low = rgb.amin(dim=(1, 2, 3), keepdim=True)
    high = rgb.amax(dim=(1, 2, 3), keepdim=True)
    return (rgb - low) / (high - low).clamp_min(1e-6)
