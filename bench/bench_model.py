"""Build the benchmark model: SD-Turbo's full-size architecture with random weights.

    python -m bench.bench_model [--output models/bench-sd-turbo] [--force]

Random weights cost exactly the compute of trained ones, so this folder benchmarks the server
honestly without downloading anything. It is SD-Turbo's layout (Stable Diffusion 2.1):
- UNet: block_out_channels 320/640/1280/1280, cross-attention dim 1024, attention head dims
  5/10/20/20, linear projection (about 866 M parameters);
- text encoder: OpenCLIP ViT-H's text tower as a CLIPTextModel (hidden 1024, 23 layers,
  16 heads, 49408-token vocabulary);
- VAE: the standard SD AutoencoderKL (128/256/512/512);
- scheduler: Euler with trailing timesteps, as SD-Turbo ships.
Also writes models/taesd: TAESD's AutoencoderTiny architecture with random weights (about
10 MB), the tiny VAE that TINY_VAE=true decodes SD-family images with.
Saved as float32 safetensors (about 5 GB), like the checkpoint's default files. The tokenizer
is the demo's byte-level one: its ids are a subset of the real vocabulary, so every prompt
works and the embedding table has the real size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import backend  # noqa: F401  (hub offline before diffusers is imported)
from backend.config import resolve_path
from backend.model.demo import (
    TOKENIZER_MAX_LENGTH,
    build_tiny_vae,
    build_tokenizer,
    euler_scheduler,
    save_pipeline,
)

DEFAULT_FOLDER = "models/bench-sd-turbo"  # git-ignored like every model folder
TINY_VAE_FOLDER = "models/taesd"  # where TINY_VAE=true looks for the SD family's tiny VAE
SEED = 0
CLIP_VOCAB = 49408

UNET = {
    "sample_size": 64,  # 512 / 8: SD-Turbo's native 512x512
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}
TEXT_ENCODER = {
    "vocab_size": CLIP_VOCAB,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": TOKENIZER_MAX_LENGTH,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}


def build_components(seed: int = SEED) -> dict[str, Any]:
    """The models, each seeded on its own (on the meta device inside `init_empty_weights`)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**VAE)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **TEXT_ENCODER,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer}


def save_bench_model(folder: Path, seed: int = SEED) -> Path:
    """Build the pipeline and write it as safetensors, atomically."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        **build_components(seed),
        scheduler=euler_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return save_pipeline(pipeline, folder)


def parameter_counts(components: dict[str, Any]) -> dict[str, int]:
    """Parameters per model component."""
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in components.items()
        if hasattr(module, "parameters")
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: build the benchmark model unless it is already there."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=DEFAULT_FOLDER, help="folder to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.add_argument("--tiny-vae", default=TINY_VAE_FOLDER, help="tiny VAE folder to write")
    args = parser.parse_args(argv)
    tiny = resolve_path(args.tiny_vae)
    if not (tiny / "config.json").is_file() or args.force:
        save_pipeline(build_tiny_vae(full_size=True, seed=SEED), tiny)
        print(f"tiny VAE (TAESD architecture) written to {tiny}")
    folder = resolve_path(args.output)
    if (folder / "model_index.json").is_file() and not args.force:
        print(f"benchmark model already at {folder}")
        return 0
    started = time.perf_counter()
    save_bench_model(folder)
    size = sum(path.stat().st_size for path in folder.rglob("*.safetensors"))
    print(
        f"benchmark model written to {folder}: {size / 2**30:.2f} GiB of safetensors "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
