"""Turning the DEVICE and TORCH_DTYPE settings into torch objects, with clear failures."""

from __future__ import annotations

import gc

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


def expand_devices(devices: tuple[str, ...] | None, single: str) -> list[str]:
    """The devices to run workers on: DEVICES (auto: every visible GPU, else the CPU), or DEVICE."""
    if devices is None:
        return [single]
    if devices == ("auto",):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{index}" for index in range(count)] or ["cpu"]
    return list(devices)


def runs_on_cpu(setting: str) -> bool:
    """Whether a DEVICE value resolves to the CPU (`auto` does without a CUDA GPU)."""
    return setting == "cpu" or (setting == "auto" and not torch.cuda.is_available())


def describe(device: torch.device) -> str:
    """A human name for `device` (the GPU's model, or "CPU")."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def memory(device: torch.device) -> dict[str, int] | None:
    """Bytes used and total on a CUDA device (None on the CPU), and those held by torch."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return {"used": total - free, "total": total, "allocated": torch.cuda.memory_allocated(device)}


def release_memory(device: torch.device) -> None:
    """Give freed memory back: collect garbage, and empty torch's CUDA cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """`auto` means float16 on CUDA (half the memory, tensor cores) and float32 on the CPU."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[setting]
