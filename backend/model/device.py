"""Turning the DEVICE and TORCH_DTYPE settings into torch objects, with clear failures."""

from __future__ import annotations

import torch

from backend.model.errors import DeviceError

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(setting: str) -> torch.device:
    """`auto` picks the first CUDA GPU when there is one, else the CPU."""
    if setting == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"DEVICE={setting} but this machine has no usable CUDA GPU.")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"DEVICE={setting} but only {torch.cuda.device_count()} CUDA GPU(s) are visible."
            )
        device = torch.device("cuda", index)
    return device


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """`auto` means float16 on CUDA (half the memory, tensor cores) and float32 on the CPU."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[setting]
