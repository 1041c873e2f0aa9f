"""The LoRA files in LORAS_DIR, read without torch: names, formats and the family each fits.

Both the API process (which validates requests, in both queue modes) and the device workers
(which load the files) use this. Only a safetensors file's JSON header is read: its 8-byte
little-endian length, then the tensor names, dtypes and shapes.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".safetensors"
PICKLED = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER = 64 * 1024 * 1024  # a header larger than this is not a LoRA's
# What a request may call a LoRA: a plain file name, never a path out of LORAS_DIR.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,127}$")


class LoraFileError(ValueError):
    """A LoRA file cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class LoraFile:
    """One LoRA file: its name in requests, where it is, its format and family."""

    name: str
    path: Path
    format: str  # "diffusers" (diffusers/PEFT keys) or "kohya" (kohya/AUTOMATIC1111 keys)
    family: str  # "sd", "sdxl", "sd3", "flux", or "unknown"
    text_encoder: bool  # whether it changes a text encoder (and so the prompt embeddings)
    rank: int  # the largest rank among its layers

    @property
    def relative(self) -> str:
        """The path shown to clients: relative to LORAS_DIR, never the server's own path."""
        return self.path.name


def read_header(path: Path) -> dict[str, Any]:
    """The tensor entries of a safetensors file's header (no tensor is read)."""
    try:
        with path.open("rb") as handle:
            size_bytes = handle.read(8)
            if len(size_bytes) != 8:
                raise LoraFileError(f"LoRA file '{path.name}' is too short to be safetensors.")
            (size,) = struct.unpack("<Q", size_bytes)
            if size > MAX_HEADER:
                raise LoraFileError(f"LoRA file '{path.name}' has an implausible header.")
            header = json.loads(handle.read(size))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LoraFileError(
            f"LoRA file '{path.name}' is not a readable safetensors file ({type(error).__name__})."
        ) from None
    if not isinstance(header, dict):
        raise LoraFileError(f"LoRA file '{path.name}' has no tensor table.")
    return {key: value for key, value in header.items() if key != "__metadata__"}


def describe(path: Path) -> LoraFile:
    """What `path` holds, from its header; LoraFileError if it is not a LoRA this server reads."""
    if path.suffix.lower() != SUFFIX:
        raise LoraFileError(
            f"LoRA file '{path.name}' is not .safetensors; pickled weights are never loaded."
        )
    tensors = read_header(path)
    keys = list(tensors)
    kohya = any(key.startswith(("lora_unet_", "lora_te", "lora_transformer_")) for key in keys)
    lora_like = kohya or any(".lora" in key or "lora_" in key for key in keys)
    if not keys or not lora_like:
        raise LoraFileError(f"'{path.name}' holds no LoRA layers (no lora_* tensor names).")
    text_encoder = any(key.startswith(("text_encoder", "lora_te")) for key in keys)
    return LoraFile(
        name=path.name[: -len(SUFFIX)],
        path=path,
        format="kohya" if kohya else "diffusers",
        family=_family(tensors),
        text_encoder=text_encoder,
        rank=_rank(tensors),
    )


def _family(tensors: dict[str, Any]) -> str:  # noqa: PLR0911 - one return per family
    """The family the layer names fit: pragmatic guesses from names and a few shapes."""
    keys = list(tensors)

    def has(*parts: str) -> bool:
        return any(part in key for key in keys for part in parts)

    if has("single_transformer_blocks", "single_blocks", "double_blocks"):
        return "flux"
    if has("joint_blocks"):
        return "sd3"  # kohya's SD3 names
    if has("transformer_blocks") and not has("unet", "lora_te"):
        # SD3's MMDiT joint attention; PixArt's and Sana's cross-attention are let through.
        return "unknown" if has("attn2", "cross_attn") else "sd3"
    if any(key.startswith(("text_encoder_2.", "lora_te2_")) for key in keys):
        return "sdxl"
    if has("lora_unet_input_blocks", "lora_unet_output_blocks", "lora_unet_middle_block"):
        return "sdxl"  # kohya's SDXL files use the original (SGM) block names
    for key, entry in tensors.items():
        # Cross-attention reads the text embeddings: 2048 wide is SDXL's two encoders together.
        shape = entry.get("shape") if isinstance(entry, dict) else None
        down = "down" in key or "lora_A" in key
        if "attn2" in key and "to_k" in key and down and shape and shape[-1] == 2048:
            return "sdxl"
    if has("unet", "lora_te", "text_encoder"):
        return "sd"
    return "unknown"


def _rank(tensors: dict[str, Any]) -> int:
    ranks = [
        min(entry["shape"])
        for key, entry in tensors.items()
        if isinstance(entry, dict)
        and len(entry.get("shape") or ()) >= 2
        and ("lora_A" in key or "lora_down" in key or "lora.down" in key)
    ]
    return max(ranks, default=0)


def fits(lora: LoraFile, family: str) -> bool:
    """Whether `lora` can be applied to a model of `family` (unknown files are let through)."""
    return lora.family in (family, "unknown")


def find(loras_dir: Path, name: str) -> Path | None:
    """The file `name` names in `loras_dir`, or None; a name never reaches outside the folder."""
    if not NAME.match(name) or ".." in name:
        return None
    path = loras_dir / f"{name}{SUFFIX}"
    try:
        if path.resolve().parent != loras_dir.resolve() or not path.is_file():
            return None
    except OSError:
        return None
    return path


def list_loras(loras_dir: Path) -> list[LoraFile]:
    """Every usable LoRA in `loras_dir`, by name; unreadable files are left out."""
    if not loras_dir.is_dir():
        return []
    found = []
    for path in sorted(loras_dir.glob(f"*{SUFFIX}")):
        if find(loras_dir, path.name[: -len(SUFFIX)]) is None:
            continue
        try:
            found.append(describe(path))
        except LoraFileError:
            continue
    return found


def lookup(loras_dir: Path, name: str) -> LoraFile:
    """The LoRA `name` names; LoraFileError (listing the available ones) if there is none."""
    path = find(loras_dir, name)
    if path is None:
        available = ", ".join(each.name for each in list_loras(loras_dir)) or "none"
        raise LoraFileError(f"Unknown LoRA '{name[:64]}'. Available: {available}.")
    return describe(path)
