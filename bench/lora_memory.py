"""Memory while requests cycle through many LoRAs: flat is good.

    python -m bench.lora_memory [--requests 1000] [--loras 10] [--max-loaded 8] [--steps 1]

Makes `loras` copies of the demo's all-green LoRA with perturbed weights in a temporary
LORAS_DIR, installs the trained demo in a temporary MODELS_DIR, and sends `requests` requests
through the server's own engine, each naming the next LoRA in turn (so with --max-loaded below
--loras every request loads one adapter and evicts another). Prints the process's RSS (and the
GPU's allocated memory on CUDA) at the start, after a warm-up round through every LoRA, and at
the end.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import backend  # noqa: F401  (hub offline before diffusers is imported)
from backend.config import load_settings
from backend.model.demo_trained import DEMO_LORAS, install_trained_demo
from backend.model.engine import Engine
from backend.model.types import GenerationRequest, LoraChoice


def rss_mb() -> float:
    """The process's resident memory now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpu_mb() -> float | None:
    """CUDA memory allocated by torch, in MiB (None without CUDA)."""
    import torch

    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None


def make_loras(folder: Path, count: int) -> list[str]:
    """`count` copies of the all-green LoRA, each with its weights perturbed by its own seed."""
    import torch
    from safetensors.torch import load_file, save_file

    source = load_file(str(DEMO_LORAS / "all-green.safetensors"))
    names = []
    for index in range(count):
        generator = torch.Generator().manual_seed(index)
        perturbed = {
            key: (value.float() * (1 + 0.1 * torch.randn(value.shape, generator=generator))).to(
                value.dtype
            )
            for key, value in source.items()
        }
        names.append(f"green-{index:02d}")
        save_file(perturbed, str(folder / f"{names[-1]}.safetensors"))
    return names


def report(label: str, started: float) -> None:
    """One line of figures."""
    gpu = gpu_mb()
    vram = f", GPU allocated {gpu:.1f} MiB" if gpu is not None else ""
    print(f"{label:>12}: RSS {rss_mb():7.1f} MiB{vram} ({time.monotonic() - started:.0f} s)")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Command line: run the cycle and print RSS at start, after warm-up and at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--loras", type=int, default=10)
    parser.add_argument("--max-loaded", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        install_trained_demo(root / "models" / "demo")
        (root / "loras").mkdir()
        names = make_loras(root / "loras", args.loras)
        settings = load_settings(
            {
                "MODELS_DIR": str(root / "models"),
                "DEFAULT_MODEL": "demo",
                "LORAS_DIR": str(root / "loras"),
                "MAX_LORAS_LOADED": args.max_loaded,
                "DEVICE": args.device,
                "JOBS_DIR": "off",
                "LOG_LEVEL": "warning",
            }
        )
        engine = Engine(settings)
        engine.start()
        started = time.monotonic()
        try:
            if not engine.wait_until_loaded(600) or not engine.status().ready:
                raise SystemExit(f"the model did not load: {engine.status().error}")
            report("start", started)
            for index in range(args.requests):
                name = names[index % len(names)]
                engine.generate(
                    GenerationRequest(
                        prompt="a red circle in the centre, on a white background",
                        negative_prompt="",
                        width=64,
                        height=64,
                        steps=args.steps,
                        guidance_scale=5.0,
                        seed=index,
                        loras=(LoraChoice(name, 1.0),),
                    )
                )
                if index + 1 == 2 * len(names):  # every LoRA loaded (and evicted) once
                    report("warmed up", started)
                elif (index + 1) % 100 == 0:
                    report(f"{index + 1}", started)
            report("end", started)
        finally:
            engine.stop(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
