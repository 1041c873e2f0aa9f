"""Loading a diffusers pipeline from a local folder: safetensors only, never the network."""

from __future__ import annotations

import logging
import threading

import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from backend.config import MemorySettings
from backend.model.registry import ModelFolder

log = logging.getLogger(__name__)

# One load at a time in the process: diffusers/accelerate build models under a context that
# patches torch.nn.Module globally (empty "meta" weights), so two threads loading at once
# corrupt each other ("Cannot copy out of meta tensor"). Loading is disk-bound anyway.
_LOADING = threading.Lock()

# Truncation warnings quote the prompt; prompts stay out of the logs.
diffusers_logging.set_verbosity_error()
diffusers_logging.disable_progress_bar()


def load_pipeline(
    folder: ModelFolder, device: torch.device, dtype: torch.dtype, memory: MemorySettings
) -> DiffusionPipeline:
    """Load `folder` for `device`, fitted as `memory` says; raises what diffusers raises."""
    with _LOADING:
        return _load(folder, device, dtype, memory)


def _load(
    folder: ModelFolder, device: torch.device, dtype: torch.dtype, memory: MemorySettings
) -> DiffusionPipeline:
    pipeline = AutoPipelineForText2Image.from_pretrained(
        folder.path,
        local_files_only=True,
        use_safetensors=True,
        variant=folder.variant,
        dtype=dtype,
        # Components the folder lacks (SD3 without T5) must be named as None to diffusers.
        **dict.fromkeys(folder.absent),
    )
    if memory.cpu_offload != "none" and device.type == "cuda":
        # Weights stay in host memory and visit the GPU per model (or per layer): slower,
        # but an SDXL or SD3 fits a small card.
        if memory.cpu_offload == "model":
            pipeline.enable_model_cpu_offload(device=device)
        else:
            pipeline.enable_sequential_cpu_offload(device=device)
    else:
        if memory.cpu_offload != "none":
            log.warning("CPU_OFFLOAD=%s only applies to CUDA devices; ignored on %s",
                        memory.cpu_offload, device)  # fmt: skip
        pipeline.to(device)
    if memory.attention_slicing:
        pipeline.enable_attention_slicing()
    if memory.vae_slicing:
        pipeline.vae.enable_slicing()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
