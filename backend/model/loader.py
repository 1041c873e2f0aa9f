"""Loading a diffusers pipeline from a local folder: safetensors only, never the network."""

from __future__ import annotations

import logging

import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from backend.model.registry import ModelFolder

log = logging.getLogger(__name__)

# Truncation warnings quote the prompt; prompts stay out of the logs.
diffusers_logging.set_verbosity_error()
diffusers_logging.disable_progress_bar()


def load_pipeline(
    folder: ModelFolder, device: torch.device, dtype: torch.dtype
) -> DiffusionPipeline:
    """Load `folder` onto `device`; raises whatever diffusers raises for a broken folder."""
    pipeline = AutoPipelineForText2Image.from_pretrained(
        folder.path,
        local_files_only=True,
        use_safetensors=True,
        variant=folder.variant,
        dtype=dtype,
    )
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
