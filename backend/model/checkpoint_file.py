"""What a single-file checkpoint is, read from its safetensors header alone (no torch).

A `.safetensors` file starts with an 8-byte little-endian header length, then that many bytes of
JSON naming every tensor with its dtype and shape. That is enough to tell the family: each
original (non-diffusers) layout has tensor names of its own. The key names are those diffusers'
single-file loader checks (`single_file_utils.CHECKPOINT_KEY_NAMES`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from backend.model.catalogue import Family
from backend.model.errors import ModelFolderError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# SDXL's header is ~0.3 MB, FLUX's ~0.1 MB; a bigger one is not a checkpoint we know.
MAX_HEADER_BYTES = 64 * 1024 * 1024

_UNET = "model.diffusion_model."
_MMDIT_BLOCK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
_KEYS = {
    "clip": "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    "open_clip": "cond_stage_model.model.token_embedding.weight",
    "xl_clip_g": "conditioner.embedders.1.model.positional_embedding",
    "xl_refiner": "conditioner.embedders.0.model.text_projection",
    "sd3_clip_l": "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight",
    "sd3_clip_g": "text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight",
    "sd3_t5": "text_encoders.t5xxl.transformer.shared.weight",
    "flux": "double_blocks.0.img_attn.norm.key_norm.scale",
}
_VAE_PREFIXES = ("first_stage_model.", "vae.")


@dataclass(frozen=True)
class CheckpointKind:
    """The family and variant a checkpoint's tensors reveal."""

    # The config folder it needs: sd1, sd2, sdxl, sd3, sd3.5-medium, sd3.5-large, flux-dev,
    # flux-schnell.
    kind: str
    family: Family
    pipeline_class: str
    has_t5: bool = False  # SD3: the file carries the T5 encoder
    v_prediction: bool = False  # a marker in the file says it predicts v (not epsilon)
    zero_terminal_snr: bool = False  # a marker says it was trained with zero terminal SNR
    # Components the file lacks, whose weights the config folder must hold (a FLUX transformer
    # alone: "vae", "text_encoder", "text_encoder_2").
    missing: tuple[str, ...] = ()


def read_header(path: Path) -> dict[str, dict]:
    """The tensor entries of a safetensors file's header; ModelFolderError naming the file."""
    shown = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelFolderError(f"'{shown}' is too short to be a safetensors file.")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES or length > size - 8:
                raise ModelFolderError(
                    f"'{shown}' is not a readable safetensors file (its header length, {length} "
                    "bytes, does not fit the file)."
                )
            raw = handle.read(length)
    except OSError as error:
        raise ModelFolderError(f"'{shown}' cannot be read ({error.strerror}).") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[..."
        raise ModelFolderError(
            f"'{shown}' is not a readable safetensors file (its header is not JSON)."
        ) from None
    if not isinstance(header, dict):
        raise ModelFolderError(f"'{shown}' is not a readable safetensors file.")
    header.pop("__metadata__", None)
    tensors = {
        name: entry
        for name, entry in header.items()
        if isinstance(entry, dict) and isinstance(entry.get("shape"), list)
    }
    if len(tensors) != len(header):
        raise ModelFolderError(f"'{shown}' has a malformed safetensors header.")
    return tensors


def read_metadata(path: Path) -> dict[str, str]:
    """The header's free-form `__metadata__` strings (empty when absent or unreadable)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES:
                return {}
            metadata = json.loads(handle.read(length)).get("__metadata__") or {}
    except (OSError, ValueError, RecursionError, struct.error, AttributeError):
        return {}
    return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


def inspect_checkpoint(path: Path) -> CheckpointKind:
    """The family of the checkpoint at `path`; ModelFolderError naming the file if unsupported."""
    shown = path.name
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFolderError(
            f"'{shown}' is a pickle checkpoint. This server loads safetensors only, because "
            "pickle files can run code when loaded: download the .safetensors file instead."
        )
    if path.suffix.lower() != ".safetensors":
        raise ModelFolderError(f"'{shown}' is not a .safetensors checkpoint.")
    tensors = read_header(path)
    kind = detect(tensors, shown)
    metadata = read_metadata(path)
    # "v_pred" is the marker A1111/ComfyUI honour; modelspec is Stability's metadata standard.
    v_pred = "v_pred" in tensors or metadata.get("modelspec.prediction_type") == "v"
    return replace(kind, v_prediction=v_pred, zero_terminal_snr="ztsnr" in tensors)


def detect(tensors: dict[str, dict], shown: str) -> CheckpointKind:
    """The family and variant the tensor names and shapes reveal."""
    if _KEYS["flux"] in tensors or _UNET + _KEYS["flux"] in tensors:
        from backend.model.checkpoint_flux import detect_flux  # it builds on CheckpointKind

        return detect_flux(tensors, shown)
    if _MMDIT_BLOCK in tensors or _UNET + _MMDIT_BLOCK in tensors:
        return _sd3(tensors, shown)
    unet_in = tensors.get(_UNET + "input_blocks.0.0.weight")
    if unet_in is None:
        raise _unknown(shown)
    if len(unet_in["shape"]) == 4 and unet_in["shape"][1] == 9:
        raise ModelFolderError(
            f"'{shown}' is an inpainting checkpoint (9 input channels), not a text-to-image one."
        )
    _require_vae(tensors, shown)
    if _KEYS["xl_clip_g"] in tensors:
        return CheckpointKind("sdxl", Family.SDXL, "StableDiffusionXLPipeline")
    if _KEYS["xl_refiner"] in tensors:
        raise ModelFolderError(
            f"'{shown}' is an SDXL refiner checkpoint (image-to-image), not a text-to-image one."
        )
    if _KEYS["open_clip"] in tensors:
        return CheckpointKind("sd2", Family.SD, "StableDiffusionPipeline")
    if _KEYS["clip"] in tensors:
        return CheckpointKind("sd1", Family.SD, "StableDiffusionPipeline")
    raise ModelFolderError(
        f"'{shown}' holds a UNet and a VAE but no text encoder this server recognises "
        "(cond_stage_model.* or conditioner.embedders.*)."
    )


def _sd3(tensors: dict[str, dict], shown: str) -> CheckpointKind:
    _require_vae(tensors, shown)
    if _KEYS["sd3_clip_l"] not in tensors or _KEYS["sd3_clip_g"] not in tensors:
        raise ModelFolderError(
            f"'{shown}' is an SD3 checkpoint without its CLIP text encoders (the transformer "
            "alone): use the variant that includes them (for example *_incl_clips*.safetensors) "
            "or the model's diffusers folder."
        )
    prefix = _UNET if _UNET + _MMDIT_BLOCK in tensors else ""
    depth = 1 + max(
        int(name[len(prefix) :].split(".")[1])
        for name in tensors
        if name.startswith(prefix + "joint_blocks.")
    )
    if any(name.startswith(prefix + "joint_blocks.") and ".attn2." in name for name in tensors):
        kind = "sd3.5-medium"  # MMDiT-X: a second attention in the image stream
    elif depth >= 38:
        kind = "sd3.5-large"
    else:
        kind = "sd3"
    return CheckpointKind(
        kind, Family.SD3, "StableDiffusion3Pipeline", has_t5=_KEYS["sd3_t5"] in tensors
    )


def _require_vae(tensors: dict[str, dict], shown: str) -> None:
    if not any(name.startswith(_VAE_PREFIXES) for name in tensors):
        raise ModelFolderError(
            f"'{shown}' has no VAE (first_stage_model.*): it is a denoiser alone, not a full "
            "checkpoint. Use a checkpoint that includes its VAE."
        )


def _unknown(shown: str) -> ModelFolderError:
    return ModelFolderError(
        f"'{shown}' is not a checkpoint layout this server knows: its tensor names are neither "
        "SD 1.x/2.x, SDXL, SD3 nor FLUX.1 ones in the original (single-file) layout. LoRA, VAE and "
        "embedding files go in their own folders, not in MODELS_DIR."
    )
