"""Build the tiny random-weight demo model with the real diffusers and transformers classes.

It draws abstract noise, fast: it exists so the server can be tried and tested without
downloading anything, and it is loaded through exactly the same code path as a real model.

    python -m backend.model.demo                 # build into MODELS_DIR/demo if it is missing
    python -m backend.model.demo --output DIR    # build into DIR
    python -m backend.model.demo --if-default    # only when DEFAULT_MODEL is the demo
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import backend  # noqa: F401  (forces the hub offline before diffusers is imported)

DEMO_SEED = 0
TOKENIZER_MAX_LENGTH = 77  # as every CLIP tokenizer in Stable Diffusion


def build_demo_pipeline(seed: int = DEMO_SEED):  # noqa: ANN201 (diffusers is imported lazily)
    """A Stable Diffusion pipeline of a few million random weights, the same for the same seed."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _build_tokenizer()
    # Each component is seeded on its own, so changing one never changes the others' weights.
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,  # 32 latent pixels x the VAE's 8 = a 256x256 native size
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    # Four blocks give the real 8x latent scale, so sizes behave as with a real model.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TOKENIZER_MAX_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # Trailing spacing makes one-step sampling meaningful, as for the Turbo models.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_tokenizer():  # noqa: ANN202
    """A byte-level CLIP tokenizer with no merges: every character is a token, any text works."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TOKENIZER_MAX_LENGTH)


def save_demo_model(folder: Path, seed: int = DEMO_SEED) -> Path:
    """Write the demo model to `folder` as safetensors, atomically: a reader never sees half."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build_demo_pipeline(seed).save_pretrained(staging, safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line: build the demo model where the settings (or --output) say."""
    from backend.config import ConfigError, ModelName, load_settings
    from backend.model.registry import display_path, resolve_model

    parser = argparse.ArgumentParser(description="Build the tiny random-weight demo model.")
    parser.add_argument("--output", type=Path, help="folder to write (default: MODELS_DIR/demo)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    parser.add_argument(
        "--if-default", action="store_true", help="do nothing unless DEFAULT_MODEL is the demo"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    folder = args.output or ModelName.DEMO.spec(settings.models_dir).folder
    if args.if_default:
        spec = resolve_model(settings.default_model, settings.models_dir)
        if spec.name != ModelName.DEMO.value:
            return 0
        folder = spec.folder
    if (folder / "model_index.json").is_file() and not args.force:
        print(f"demo model already at {display_path(folder)}")
        return 0
    try:
        save_demo_model(folder)
    except OSError as error:
        print(f"cannot write the demo model to {display_path(folder)}: {error}", file=sys.stderr)
        return 1
    print(f"demo model written to {display_path(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
