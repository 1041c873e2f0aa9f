"""Loading a diffusers pipeline from a local folder: safetensors only, never the network."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from backend.config import MemorySettings, SpeedSettings
from backend.model import speed as speedups
from backend.model.registry import ModelFolder
from backend.model.single_file import CheckpointFolder
from backend.model.single_file_loader import load_checkpoint

log = logging.getLogger(__name__)

# One load at a time in the process: diffusers/accelerate build models under a context that
# patches torch.nn.Module globally (empty "meta" weights), so two threads loading at once
# corrupt each other ("Cannot copy out of meta tensor"). Loading is disk-bound anyway.
_LOADING = threading.Lock()

# Truncation warnings quote the prompt; prompts stay out of the logs.
diffusers_logging.set_verbosity_error()
diffusers_logging.disable_progress_bar()


def load_pipeline(
    folder: ModelFolder | CheckpointFolder,
    device: torch.device,
    dtype: torch.dtype,
    memory: MemorySettings,
    *,
    speed: SpeedSettings,
    models_dir: Path,
) -> tuple[DiffusionPipeline, speedups.Applied]:
    """Load `folder` for `device`, fitted as `memory` says and sped up as `speed` says; raises
    what diffusers raises (and ModelFolderError for a missing tiny VAE)."""
    with _LOADING:
        if isinstance(folder, CheckpointFolder):
            pipeline = load_checkpoint(folder, dtype)
        else:
            pipeline = _load_folder(folder, dtype)
        # Before placement: offloading hooks must wrap the final modules (a tiny VAE included).
        applied = speedups.optimize(pipeline, folder.family, device, speed, models_dir)
        fit_to_device(pipeline, device, memory)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline, applied


def fit_to_device(
    pipeline: DiffusionPipeline, device: torch.device, memory: MemorySettings
) -> None:
    """Place `pipeline` on `device` as the memory settings say (offload, slicing), any family."""
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
    if memory.vae_slicing == "true" or (memory.vae_slicing == "auto" and device.type == "cpu"):
        # On the CPU one image at a time decodes no slower than a batch, and it bounds the
        # peak: the bench model's worker under 4-image batches peaked at 6.2 GB, not 8.0 GB.
        getattr(pipeline.vae, "enable_slicing", lambda: None)()  # every VAE so far has it


def _load_folder(folder: ModelFolder, dtype: torch.dtype) -> DiffusionPipeline:
    return AutoPipelineForText2Image.from_pretrained(
        folder.path,
        local_files_only=True,
        use_safetensors=True,
        variant=folder.variant,
        dtype=dtype,
        # Components the folder lacks (SD3 without T5) must be named as None to diffusers.
        **dict.fromkeys(folder.absent),
    )
