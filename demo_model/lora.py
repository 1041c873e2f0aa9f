"""Train a tiny LoRA on the trained demo: `make train-demo-lora` (a few minutes on 2 cores).

The "all-green" LoRA learns to draw every shape green, whatever colour the prompt names: its
captions keep the scene's own colours while the images are recoloured. It is what the LoRA
feature's tests load to see a LoRA's weight change the image as expected.

    python -m demo_model.lora [--base demo_model/weights] [--out models/lora-all-green]

diffusers' own recipe: peft adapters of rank 4 on the UNet's attention projections, saved with
`save_lora_weights` as float16 safetensors, with a SHA256SUMS.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import backend  # noqa: F401  (forces the hub offline before diffusers is imported)
from demo_model.scenes import Scene, random_scene
from demo_model.train import CHECKSUMS, WEIGHTS, checksums

LORAS = Path(__file__).resolve().parents[1] / "models"
RANK = 4
COLOUR = "green"


def green_scene(rng: random.Random) -> tuple[Scene, Scene]:
    """(the scene as captioned, the same scene drawn with every object green)."""
    while True:
        scene = random_scene(rng)
        if scene.background != COLOUR:
            break
    recoloured = tuple(replace(obj, colour=COLOUR) for obj in scene.objects)
    return scene, replace(scene, objects=recoloured)


def train_lora(base: Path, out: Path, steps: int, seed: int) -> None:
    """Train the adapter on the frozen base pipeline and save it into `out`."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from demo_model.architecture import NATIVE_SIZE, training_scheduler
    from demo_model.data import captions, token_ids
    from demo_model.loops import CAPTION_DROP, encode_scenes

    rng = random.Random(seed)
    torch.manual_seed(seed)
    pipeline = StableDiffusionPipeline.from_pretrained(
        base, local_files_only=True, use_safetensors=True, dtype=torch.float32
    )
    unet, vae, text_encoder = pipeline.unet, pipeline.vae, pipeline.text_encoder
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=RANK,
            lora_alpha=RANK,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    pairs = [green_scene(rng) for _ in range(min(3000, 32 * steps))]  # a trial run draws less
    said = [p[0] for p in pairs]
    scenes = [p[1] for p in pairs]
    latents = encode_scenes(vae, scenes, NATIVE_SIZE) * vae.config.scaling_factor
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    schedule = training_scheduler()
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    for step in range(steps):
        picks = [rng.randrange(len(said)) for _ in range(32)]
        with torch.no_grad():
            texts = captions(rng, [said[i] for i in picks], CAPTION_DROP)
            ids = token_ids(pipeline.tokenizer, texts)
            states = text_encoder(ids)[0]
        clean = latents[picks]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (len(picks),), generator=generator)
        predicted = unet(schedule.add_noise(clean, noise, timesteps), timesteps, states).sample
        loss = F.mse_loss(predicted, schedule.get_velocity(clean, noise, timesteps))  # v-pred
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            elapsed = time.monotonic() - started
            print(f"lora {step:4d}/{steps} loss {loss.item():.4f} ({elapsed:.0f} s)")
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {name: tensor.to(torch.float16).contiguous() for name, tensor in layers.items()}
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers, safe_serialization=True)
    (out / CHECKSUMS).write_text(checksums(out))


def main(argv: list[str] | None = None) -> int:
    """Command line: train the all-green LoRA."""
    import torch

    parser = argparse.ArgumentParser(description="Train the demo's all-green LoRA on the CPU.")
    parser.add_argument("--base", type=Path, default=WEIGHTS)
    parser.add_argument("--out", type=Path, default=LORAS / "lora-all-green")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_lora(args.base, args.out, args.steps, args.seed)
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
