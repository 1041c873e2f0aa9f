"""Build the tiny random-weight demo models with the real diffusers and transformers classes.

They draw abstract noise, fast: they exist so every family can be tried and tested without
downloading anything, loaded through exactly the same code path as a real model. `demo` itself
is the trained shapes model (`backend/model/demo_trained.py`); family "sd" here is its
random-weight twin. The command line is `backend/model/demo_install.py`'s.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import backend  # noqa: F401  (forces the hub offline before diffusers is imported)

DEMO_SEED = 0
TOKENIZER_MAX_LENGTH = 77  # as every CLIP tokenizer in Stable Diffusion


def build_demo_pipeline(family: str = "sd", seed: int = DEMO_SEED):  # noqa: ANN201
    """A `family` (sd, sdxl, sd3, or one of `demo_families.BUILDERS`) pipeline of a few million
    random weights, fixed by `seed`."""
    from backend.model import demo_tasks
    from backend.model.demo_families import BUILDERS

    builders = {"sd": _build_sd, "sdxl": _build_sdxl, "sd3": _build_sd3, **BUILDERS}
    builders.update(demo_tasks.BUILDERS)
    return builders[family](seed)


def _build_sd(seed: int):  # noqa: ANN202 (diffusers is imported lazily)
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer = build_tokenizer()
    unet = _build_unet(seed, cross_attention_dim=_CLIP_WIDTH)
    text_encoder = _build_text_encoder(CLIPTextModel, tokenizer, seed + 2)
    return StableDiffusionPipeline(
        unet=unet,
        vae=_build_vae(seed + 1),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=euler_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl(seed: int):  # noqa: ANN202
    """SDXL's shape in miniature: two text encoders, concatenated, and `text_time` conditioning."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tokenizer()
    time_embed_dim = 8
    unet = _build_unet(
        seed,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # Six size/crop numbers, embedded, plus the second encoder's pooled projection.
        projection_class_embeddings_input_dim=6 * time_embed_dim + _CLIP_WIDTH,
        cross_attention_dim=2 * _CLIP_WIDTH,  # both encoders' hidden states, side by side
    )
    text_encoder = _build_text_encoder(CLIPTextModel, tokenizer, seed + 2)
    text_encoder_2 = _build_text_encoder(CLIPTextModelWithProjection, tokenizer, seed + 3)
    return StableDiffusionXLPipeline(
        unet=unet,
        vae=_build_vae(seed + 1, scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=euler_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def _build_sd3(seed: int):  # noqa: ANN202
    """SD3's shape in miniature: an MMDiT transformer, two CLIP encoders, and no T5."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,  # as SD3: sides must be multiples of 16
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=2 * _CLIP_WIDTH,  # the CLIP states, unpadded (T5's width in SD3)
        pooled_projection_dim=2 * _CLIP_WIDTH,
    )
    text_encoder = _build_text_encoder(CLIPTextModelWithProjection, tokenizer, seed + 2)
    text_encoder_2 = _build_text_encoder(CLIPTextModelWithProjection, tokenizer, seed + 3)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        vae=_build_vae(seed + 1, scaling_factor=1.5035, shift_factor=0.0609),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        text_encoder_3=None,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        tokenizer_3=None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


_CLIP_WIDTH = 32


def _build_text_encoder(model_class, tokenizer, seed: int):  # noqa: ANN001, ANN202
    """A CLIP text encoder of `model_class`, its weights fixed by `seed`."""
    import torch

    torch.manual_seed(seed)
    return model_class(_clip_config(tokenizer))


def _clip_config(tokenizer):  # noqa: ANN001, ANN202
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_CLIP_WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        projection_dim=_CLIP_WIDTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _build_unet(seed: int, **config: Any):  # noqa: ANN202
    import torch
    from diffusers import UNet2DConditionModel

    # Each component is seeded on its own, so changing one never changes the others' weights.
    torch.manual_seed(seed)
    config = {"in_channels": 4, **config}  # 9 for an inpainting UNet (demo_tasks.py)
    return UNet2DConditionModel(
        sample_size=32,  # 32 latent pixels x the VAE's 8 = a 256x256 native size
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        norm_num_groups=32,
        **config,
    )


def _build_vae(seed: int, **config: float):  # noqa: ANN202
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    # Four blocks give the real 8x latent scale, so sizes behave as with a real model.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
        **config,
    )


def build_tiny_vae(  # noqa: ANN201
    latent_channels: int = 4, seed: int = DEMO_SEED, full_size: bool = False, scale: int = 8
):
    """An AutoencoderTiny (the TAESD architecture) with random weights: a few thousand of them
    at `scale` (pixels per latent), or TAESD's real size with `full_size` (for benchmarks)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    if full_size:
        return AutoencoderTiny(latent_channels=latent_channels)  # TAESD's own defaults
    blocks = scale.bit_length()  # one block more than the halvings: 8x takes four
    return AutoencoderTiny(
        encoder_block_out_channels=(8,) * blocks,
        decoder_block_out_channels=(8,) * blocks,
        num_encoder_blocks=(1,) * blocks,
        num_decoder_blocks=(1,) * blocks,
        latent_channels=latent_channels,
    )


def euler_scheduler():  # noqa: ANN201
    """Euler with SD's betas and trailing timesteps (one-step sampling works, as for Turbo)."""
    from diffusers import EulerDiscreteScheduler

    # Trailing spacing makes one-step sampling meaningful, as for the Turbo models.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )


def build_tokenizer():  # noqa: ANN201
    """A byte-level CLIP tokenizer with no merges: every character is a token, any text works."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TOKENIZER_MAX_LENGTH)


# The catalogue's demo names, and the family each is built as.
DEMO_FAMILIES = {
    "demo": "sd",
    "demo-sdxl": "sdxl",
    "demo-sd3": "sd3",
    "demo-sd35": "sd35",
    "demo-flux": "flux",
    "demo-pixart": "pixart",
    "demo-sana": "sana",
    "demo-inpaint": "sd-inpaint",  # a 9-channel inpainting UNet (demo_tasks.py)
    "demo-sdxl-refiner": "sdxl-refiner",  # REFINER_MODEL for demo-sdxl
}


def save_demo_model(folder: Path, family: str = "sd", seed: int = DEMO_SEED) -> Path:
    """Write a demo model to `folder` as safetensors, atomically: a reader never sees half."""
    from diffusers.utils import logging as diffusers_logging

    # Saving SD3 without T5 warns that None "cannot be saved": expected, and noise here.
    diffusers_logging.set_verbosity_error()
    return save_pipeline(build_demo_pipeline(family, seed), folder)


def save_pipeline(pipeline: Any, folder: Path) -> Path:
    """Write `pipeline` (or one model) to `folder` as safetensors, atomically: a reader never
    sees half."""
    return write_folder(
        folder, lambda staging: pipeline.save_pretrained(staging, safe_serialization=True)
    )


def write_folder(folder: Path, fill: Callable[[Path], Any]) -> Path:
    """Let `fill` write into a staging folder beside `folder`, then swap it in: a reader never
    sees half, and a failed `fill` leaves `folder` as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        fill(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


if __name__ == "__main__":
    from backend.model.demo_install import main

    sys.exit(main())
