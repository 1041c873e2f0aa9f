"""FLUX.1 single files, told apart by their tensor names alone (no torch).

Black Forest Labs ship the transformer alone (`flux1-dev.safetensors`: `double_blocks.*`,
`img_in.*`, `time_in.*`; dev adds `guidance_in.*`, its distilled-guidance input). All-in-one files
(ComfyUI's `flux1-dev-fp8.safetensors`) put it under `model.diffusion_model.` beside the VAE
(`vae.` or `first_stage_model.`), CLIP-L and T5 (`text_encoders.clip_l/t5xxl.transformer.`).
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.model.catalogue import Family
from backend.model.checkpoint_file import CheckpointKind
from backend.model.errors import ModelFolderError

PREFIX = "model.diffusion_model."
VAE_PREFIXES = ("vae.", "first_stage_model.")
CLIP_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
_GUIDANCE = "guidance_in.in_layer.weight"
_IMG_IN = "img_in.weight"


def transformer_prefix(tensors: dict[str, dict] | list[str]) -> str:
    """The prefix of the transformer's keys in a FLUX file ("" in BFL's own files)."""
    return PREFIX if any(name.startswith(PREFIX + "double_blocks.") for name in tensors) else ""


def detect_flux(tensors: dict[str, dict], shown: str) -> CheckpointKind:
    """FLUX.1 dev or schnell, and which components the file lacks."""
    prefix = transformer_prefix(tensors)
    img_in = tensors.get(prefix + _IMG_IN)
    if img_in is None or "vector_in.in_layer.weight" not in {
        name[len(prefix) :] for name in tensors if name.startswith(prefix)
    }:
        raise ModelFolderError(
            f"'{shown}' is a FLUX checkpoint this server does not load (no img_in/vector_in: "
            "FLUX.2 or another derivative); use its diffusers folder."
        )
    if len(img_in["shape"]) == 2 and img_in["shape"][1] in (128, 384):
        # Fill (384) and Depth/Canny (128) take a control image beside the latents.
        raise ModelFolderError(
            f"'{shown}' is a FLUX.1 Fill/Depth/Canny checkpoint ({img_in['shape'][1]} input "
            "channels), not a text-to-image one."
        )
    missing = []
    if not any(name.startswith(VAE_PREFIXES) for name in tensors):
        missing.append("vae")
    if not any(name.startswith(CLIP_PREFIX) for name in tensors):
        missing.append("text_encoder")
    has_t5 = any(name.startswith(T5_PREFIX) for name in tensors)
    if not has_t5:
        missing.append("text_encoder_2")
    kind = "flux-dev" if prefix + _GUIDANCE in tensors else "flux-schnell"
    return CheckpointKind(kind, Family.FLUX, "FluxPipeline", has_t5=has_t5, missing=tuple(missing))


def flux_misfit(folder: Path, tensors: dict[str, dict], kind: CheckpointKind) -> str | None:
    """Why diffusers folder `folder` cannot build FLUX file `tensors` (None: it can)."""
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no transformer/config.json"
    prefix = transformer_prefix(tensors)
    width = config.get("num_attention_heads", 0) * config.get("attention_head_dim", 0)
    found = {
        part: len({n.split(".")[1] for n in tensors if n.startswith(f"{prefix}{part}.")})
        for part in ("double_blocks", "single_blocks")
    }
    checks = [
        ("double blocks", found["double_blocks"], config.get("num_layers")),
        ("single blocks", found["single_blocks"], config.get("num_single_layers")),
        ("width", tensors[prefix + _IMG_IN]["shape"][0], width),
        ("guidance embedding", kind.kind == "flux-dev", bool(config.get("guidance_embeds"))),
    ]
    for what, have, want in checks:
        if have != want:
            return f"{what}: the file has {have}, the config says {want}"
    lacking = [c for c in kind.missing if not any((folder / c).glob("*.safetensors"))]
    if lacking:
        return f"it has no weights for {', '.join(lacking)}, which the file lacks"
    return None
