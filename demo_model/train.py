"""Train the shapes demo from nothing, on the CPU: `make train-demo` (about 25 minutes on 2 cores).

    python -m demo_model.train                      # into demo_model/weights, with SHA256SUMS
    python -m demo_model.train --out D --quick      # a short run into D, to try changes
    python -m demo_model.train --vae-from D/vae     # reuse a trained VAE: the same UNet as a
                                                    # whole run, 4 minutes sooner

0. the text encoder learns to name what captions say (caption_targets.py);
1. the VAE learns to rebuild rendered scenes (it is an autoencoder first);
2. every training scene is encoded once, and the latents' spread sets the VAE's scaling factor;
3. the UNet and the text encoder learn to denoise those latents from their captions, with 10%
   of the captions dropped (classifier-free guidance);
4. the pipeline is saved in float16 as safetensors, with a SHA256SUMS of every file.

The same seed and thread count give the same bytes on the same torch and kind of CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

import backend  # noqa: F401  (forces the hub offline before diffusers is imported)
from backend.model.demo_trained import CHECKSUMS, TRAINED_WEIGHTS

WEIGHTS = TRAINED_WEIGHTS  # the committed weights: a default run reproduces them


def build_trained_pipeline(  # noqa: ANN201, PLR0917
    seed: int,
    vae_steps: int,
    diffusion_steps: int,
    scenes_count: int,
    vae_from: Path | None = None,
    sides: dict[int, float] | None = None,
    text_steps: int = 400,
    batch_size: int = 64,
):
    """Train every component (steps 1-3) and return the float32 pipeline."""
    import torch
    from diffusers import StableDiffusionPipeline

    from backend.model.demo import euler_scheduler
    from demo_model import architecture
    from demo_model.caption_targets import Heads, pretrain_text
    from demo_model.data import scenes
    from demo_model.loops import encode_scenes, object_masks, train_diffusion, train_vae
    from demo_model.tokenizer import build_tokenizer

    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {line}", flush=True)

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    vae, unet, text_encoder = (
        architecture.vae(),
        architecture.unet(),
        architecture.text_encoder(tokenizer),
    )
    # 0. the text encoder learns what captions say (from its own stream of the seed)
    heads = Heads(architecture.TEXT_WIDTH)
    pretrain_text(text_encoder, heads, tokenizer, random.Random(seed + 1), text_steps, log)
    # 1. the autoencoder (or, to try changes to the rest, one trained before)
    if vae_from is None:
        train_vae(vae, random.Random(seed), vae_steps, log)
        # Encode with exactly the weights that ship: float16, as saved.
        vae = vae.to(torch.float16).to(torch.float32)
    else:
        from diffusers import AutoencoderKL

        saved = AutoencoderKL.from_pretrained(vae_from, local_files_only=True, dtype=torch.float32)
        vae.load_state_dict(saved.state_dict())  # the weights only: the config stays ours
    vae.eval().requires_grad_(False)
    # 2. the latents, at both trained sizes. Each stage draws from its own stream of the seed,
    # so a run on a saved VAE (--vae-from) trains the same UNet as a whole run.
    rng = random.Random(seed)
    sides = sides or architecture.TRAIN_SIDES
    pools = {}
    for side, share in sorted(sides.items()):
        batch = scenes(rng, max(256, round(scenes_count * share)))
        size = side * architecture.VAE_SCALE
        masks = object_masks(batch, size, architecture.VAE_SCALE)
        pools[side] = (share, batch, encode_scenes(vae, batch, size), masks)
    scale = 1.0 / pools[architecture.NATIVE_SIZE // architecture.VAE_SCALE][2].std().item()
    vae.register_to_config(scaling_factor=round(scale, 5))
    pools = {
        side: (share, batch, latents * vae.config.scaling_factor, masks)
        for side, (share, batch, latents, masks) in pools.items()
    }
    log(f"encoded {sum(len(b) for _, b, *_ in pools.values())} scenes; scaling factor {scale:.5f}")
    # 3. the denoiser and its text encoder
    train_diffusion(
        unet,
        text_encoder,
        tokenizer,
        architecture.training_scheduler(),
        pools,
        rng,
        diffusion_steps,
        log,
        heads,
        batch_size,
    )
    sampler = euler_scheduler()
    sampler.register_to_config(prediction_type=architecture.PREDICTION)
    return StableDiffusionPipeline(
        unet=unet.eval(),
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=sampler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def checksums(folder: Path) -> str:
    """SHA256SUMS text for every file under `folder` (but itself), sorted by path."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(folder).as_posix()}\n")
    return "".join(lines)


def save_weights(pipeline, folder: Path) -> None:  # noqa: ANN001
    """Step 4: float16 safetensors into `folder`, atomically, with SHA256SUMS."""
    import torch

    from backend.model.demo import save_pipeline

    save_pipeline(pipeline.to(torch.float16), folder)
    (folder / CHECKSUMS).write_text(checksums(folder))


def main(argv: list[str] | None = None) -> int:
    """Command line: train and save."""
    import torch

    parser = argparse.ArgumentParser(description="Train the demo model on the CPU.")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="folder to save the pipeline in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (fixes the bytes)")
    parser.add_argument("--text-steps", type=int, default=200)
    parser.add_argument("--vae-steps", type=int, default=2400)
    parser.add_argument("--diffusion-steps", type=int, default=4500)
    parser.add_argument("--batch-size", type=int, default=64, help="the UNet's training batch")
    parser.add_argument("--scenes", type=int, default=16000, help="training scenes, all sizes")
    parser.add_argument("--quick", action="store_true", help="a few minutes' run, to try changes")
    parser.add_argument("--vae-from", type=Path, help="reuse this saved VAE folder (experiments)")
    parser.add_argument(
        "--sides", help="latent sides and their batch shares, as 8:0.7,16:0.3 (experiments)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.text_steps, args.vae_steps, args.diffusion_steps, args.scenes = 50, 300, 600, 4000
    sides = None
    if args.sides:
        pairs = (item.split(":") for item in args.sides.split(","))
        sides = {int(side): float(share) for side, share in pairs}
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    pipeline = build_trained_pipeline(
        args.seed,
        args.vae_steps,
        args.diffusion_steps,
        args.scenes,
        args.vae_from,
        sides,
        args.text_steps,
        args.batch_size,
    )
    save_weights(pipeline, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"saved to {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
