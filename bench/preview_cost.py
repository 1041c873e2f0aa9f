"""What live previews cost: per preview, per request that asks, and for requests that don't.

    python -m bench.preview_cost [--rounds 7] [--steps 10] [--sizes 512,1024] [--device cpu]

1. One preview decoded from latents of each --sizes (SD's 4 channels, one image): the linear
   projection, and TAESD's full-size architecture (random weights: the time is the same).
2. The trained demo model served by the server's own engine, --steps steps per request, with
   previews every step (linear, then the tiny VAE from VAES_DIR) and without: the medians of
   --rounds requests each, interleaved so drift hits all alike.
3. The step callback of a request without previews: its time per step, which is all that such a
   request pays for the feature (previews are skipped by one empty-list check).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import backend  # noqa: F401  (hub offline before diffusers is imported)
from backend.config import load_settings
from backend.model.engine import Engine
from backend.model.latent_preview import Previewer
from backend.model.step_progress import Progress
from backend.model.types import GenerationRequest


def median_ms(action: Any, rounds: int) -> float:
    """Median milliseconds of `action()` over `rounds` calls (after one warm-up)."""
    action()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def decode_costs(sizes: list[int], rounds: int, device: str, folder: Path) -> None:
    """Section 1: one preview per decoder and size."""
    import torch

    from backend.model.demo import build_tiny_vae

    build_tiny_vae(latent_channels=4, full_size=True).save_pretrained(folder / "taesd")
    linear, tiny = Previewer("sd", ()), Previewer("sd", (folder,))
    print("one preview (SD latents, one image), median ms:")
    for size in sizes:
        latents = torch.randn(1, 4, size // 8, size // 8, device=device)
        for name, previewer in (("linear", linear), ("tiny VAE (TAESD)", tiny)):
            ms = median_ms(partial(previewer.preview, None, latents, (size, size), 1, 2), rounds)
            print(f"  {size:>5} px  {name:<17} {ms:8.2f} ms")


def callback_cost(rounds: int) -> None:
    """Section 3: the step callback of a call whose requests ask for no previews."""

    class Control:
        def progress(self, step: int, total: int) -> None: ...
        def should_stop(self) -> bool:
            return False

        def interrupted(self) -> bool:
            return False

        def take_preview(self, preview: Any) -> None: ...

    class Pipeline:
        num_timesteps = 1000

    request = GenerationRequest("x", "", 64, 64, 10, 5.0, 1)
    progress = Progress([Control()], lambda _step, _total: None, [request], None)
    callback = progress.callback(1000)
    arguments = {"latents": object()}
    calls = 20_000

    def steps() -> None:
        for step in range(calls):
            callback(Pipeline(), step % 1000, None, arguments)

    per_step_us = 1000 * median_ms(steps, rounds) / calls
    print(f"step callback without previews: {per_step_us:.2f} us per step (everything it does)")


def request_costs(args: argparse.Namespace, folder: Path) -> None:
    """Section 2: whole requests on the trained demo, with and without previews."""
    from backend.model.demo import build_tiny_vae
    from backend.model.demo_trained import install_trained_demo

    install_trained_demo(folder / "models" / "demo")
    build_tiny_vae(latent_channels=8).save_pretrained(folder / "vaes" / "taesd")
    engines = {}
    for name, vaes in (("linear", folder / "none"), ("tiny", folder / "vaes")):
        settings = load_settings(
            {
                "MODELS_DIR": str(folder / "models"), "DEFAULT_MODEL": "demo",
                "DEVICE": args.device, "JOBS_DIR": "off", "LOG_LEVEL": "warning",
                "VAES_DIR": str(vaes), "MAX_BATCH_SIZE": 1,
            }
        )  # fmt: skip
        engine = Engine(settings)
        engine.start()
        if not engine.wait_until_loaded(600) or not engine.status().ready:
            raise SystemExit(f"the model did not load: {engine.status().error}")
        engines[name] = engine
    base = GenerationRequest("a red circle on a blue background", "", 64, 64, args.steps, 5.0, 1)
    runs = {
        "no previews": (engines["linear"], base),
        "every step, linear": (engines["linear"], _every(base)),
        "every step, tiny VAE": (engines["tiny"], _every(base)),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for engine, request in runs.values():
        engine.generate(request)  # warm-up
    for _ in range(args.rounds):
        for name, (engine, request) in runs.items():
            started = time.perf_counter()
            engine.generate(request)
            times[name].append(time.perf_counter() - started)
    for engine in engines.values():
        engine.stop(timeout=30)
    plain = statistics.median(times["no previews"])
    print(f"demo model, 64x64, {args.steps} steps, median of {args.rounds} requests:")
    for name, values in times.items():
        value = statistics.median(values)
        extra = value - plain
        per = f", {1000 * extra / args.steps:+.2f} ms per preview" if name != "no previews" else ""
        print(f"  {name:<22} {1000 * value:8.1f} ms ({100 * extra / plain:+5.1f}%{per})")


def _every(request: GenerationRequest) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, preview_every=1)


def main(argv: list[str] | None = None) -> int:
    """Command line: the three sections."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    sizes = [int(each) for each in args.sizes.split(",") if each]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        decode_costs(sizes, args.rounds, args.device, folder / "tiny")
        request_costs(args, folder)
        callback_cost(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
