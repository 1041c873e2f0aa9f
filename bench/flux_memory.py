"""FLUX.1's peak GPU memory under each memory setting: the demo, or the full-size architecture.

    python -m bench.flux_memory                      # demo, every setting, on cuda if present
    python -m bench.flux_memory --size full --steps 1 --out bench/results/flux-memory.json

The full size is FLUX.1 [dev]'s architecture with random weights (a 12B transformer, T5-XXL,
CLIP-L, the 16-channel VAE: about 34 GB in bfloat16), built in memory, never written to disk:
random weights cost exactly the memory and compute of trained ones. Each setting runs in its
own process (offload hooks cannot be undone cleanly), placed by the loader's own
`fit_to_device`, and reports torch's peak allocated memory for one generation at the size
given. On the CPU only the seconds mean anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import backend  # noqa: F401  (hub offline before diffusers is imported)

# name -> (CPU_OFFLOAD, VAE_TILING, ATTENTION_SLICING)
SETTINGS = {
    "none": ("none", "false", False),
    "vae_tiling": ("none", "true", False),
    "model_offload": ("model", "false", False),
    "model_offload+vae_tiling": ("model", "true", False),
    "sequential_offload": ("sequential", "false", False),
}
# FLUX.1 [dev]'s configs, as its repository's */config.json give them.
FULL_TRANSFORMER = {"guidance_embeds": True}  # the class's defaults are FLUX.1's sizes
FULL_T5 = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "feed_forward_proj": "gated-gelu",
}
FULL_CLIP = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
}
FULL_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}


def _random(module_class: Any, config: Any, device: str, dtype: Any) -> Any:
    """`module_class(config)` with N(0, 0.02) weights made on `device` in `dtype`: no float32
    copy anywhere (the full transformer alone would be 48 GB of it)."""
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device

    with init_empty_weights():  # parameters on the meta device; buffers stay real
        module = module_class(**config) if isinstance(config, dict) else module_class(config)
    for name, parameter in list(module.named_parameters()):
        value = torch.empty(parameter.shape, dtype=dtype, device=device).normal_(0.0, 0.02)
        set_module_tensor_to_device(module, name, device, value=value, dtype=dtype)
    return module.to(device)


def build_full(device: str, dtype: Any) -> Any:
    """FLUX.1 [dev]'s full architecture with random weights, on `device`."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from backend.model.demo import build_tokenizer
    from backend.model.demo_families import build_t5_tokenizer

    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, shift=3.0
        ),
        vae=_random(AutoencoderKL, FULL_VAE, device, dtype),
        text_encoder=_random(CLIPTextModel, CLIPTextConfig(**FULL_CLIP), device, dtype),
        tokenizer=build_tokenizer(),
        text_encoder_2=_random(T5EncoderModel, T5Config(**FULL_T5), device, dtype),
        tokenizer_2=build_t5_tokenizer(),
        transformer=_random(FluxTransformer2DModel, FULL_TRANSFORMER, device, dtype),
    )


def measure(name: str, size: str, steps: int, side: int, device_name: str) -> dict[str, Any]:
    """One setting, in this process: build, place, generate once; peak memory and seconds."""
    import torch

    from backend.config import load_settings
    from backend.model.demo_families import build_flux
    from backend.model.loader import fit_to_device

    offload, tiling, slicing = SETTINGS[name]
    device = torch.device(device_name)
    dtype = torch.bfloat16
    started = time.perf_counter()
    if size == "full":
        # Made on the GPU (fast), then where offloading wants it: host memory.
        pipeline = build_full(device_name, dtype)
        if offload != "none" and device.type == "cuda":
            pipeline.to("cpu")
    else:
        pipeline = build_flux(0).to(dtype=dtype)
    memory = replace(
        load_settings().memory, cpu_offload=offload, vae_tiling=tiling, attention_slicing=slicing
    )
    fit_to_device(pipeline, device, memory)
    (pipeline.vae.enable_tiling if tiling == "true" else pipeline.vae.disable_tiling)()
    pipeline.set_progress_bar_config(disable=True)
    built = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with torch.inference_mode():
        pipeline(
            prompt="a lighthouse at dusk",
            width=side,
            height=side,
            num_inference_steps=steps,
            guidance_scale=3.5,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="pil",
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {
        "setting": name,
        "size": size,
        "side": side,
        "steps": steps,
        "peak_gib": None if peak is None else round(peak, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "build_seconds": round(built, 1),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else device_name,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: every setting (each in a child process), a table, and optionally JSON."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("demo", "full"), default="demo")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--side", type=int, help="image side (default: 256 demo, 1024 full)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", help="comma-separated settings (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one setting
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    side = args.side or (1024 if args.size == "full" else 256)
    if args.one:
        print(json.dumps(measure(args.one, args.size, args.steps, side, args.device)))
        return 0
    results = []
    for name in args.only.split(",") if args.only else SETTINGS:
        command = [sys.executable, "-m", "bench.flux_memory", "--one", name, "--size", args.size]
        command += ["--steps", str(args.steps), "--side", str(side), "--device", args.device]
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = child.stdout.strip().splitlines()
        if child.returncode or not lines:
            error = (child.stderr.strip().splitlines() or ["no output"])[-1]
            result = {"setting": name, "error": error[-300:]}
        else:
            result = json.loads(lines[-1])
        results.append(result)
        shown = result.get("peak_gib", result.get("error"))
        print(f"{name:28} peak GiB: {shown}  seconds: {result.get('seconds')}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
