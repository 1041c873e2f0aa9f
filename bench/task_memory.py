"""Memory and time of one model serving txt2img, img2img and inpainting on the same weights.

    python -m bench.task_memory [--model demo|bench] [--rounds 5] [--steps 10] [--size 64]

Loads the trained demo (or, with --model bench, SD-Turbo's full-size architecture with random
weights from bench/bench_model.py, at --size 512) through the server's own engine, and prints
the process's RSS (and the GPU's allocated memory on CUDA) after txt2img alone, then after also
serving img2img and inpainting (their pipelines built by `from_pipe` on the loaded modules): the
growth should be a few percent at most. Then the time of img2img at strength 0.5 against
txt2img at the same steps (diffusers runs int(steps * 0.5) of them: about half is expected).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import backend  # noqa: F401  (hub offline before diffusers is imported)
from backend.config import load_settings
from backend.model.engine import Engine
from backend.model.types import GenerationRequest, ImageInput
from bench.lora_memory import gpu_mb, rss_mb


def png(image) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def inputs(size: int) -> tuple[bytes, bytes]:
    """A red circle on white, and a mask of its middle."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), "red")
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return png(image), png(mask)


def figures(label: str, base: float | None = None) -> float:
    """Print RSS (and GPU) now; returns the RSS."""
    rss, gpu = rss_mb(), gpu_mb()
    growth = f" ({100 * (rss - base) / base:+.1f}% vs txt2img only)" if base else ""
    vram = f", GPU allocated {gpu:.1f} MiB" if gpu is not None else ""
    print(f"{label:>28}: RSS {rss:8.1f} MiB{growth}{vram}")
    sys.stdout.flush()
    return rss


def main(argv: list[str] | None = None) -> int:
    """Command line: memory per task, then the img2img/txt2img time ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("demo", "bench"), default="demo")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=0, help="0: 64 (demo) or 512 (bench)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    size = args.size or (64 if args.model == "demo" else 512)
    with tempfile.TemporaryDirectory() as temporary:
        models = Path(temporary) / "models"
        if args.model == "demo":
            from backend.model.demo_trained import install_trained_demo

            install_trained_demo(models / "demo")
        else:
            from bench.bench_model import save_bench_model

            save_bench_model(models / "demo")
        settings = load_settings(
            {
                "MODELS_DIR": str(models), "DEFAULT_MODEL": "demo", "DEVICE": args.device,
                "JOBS_DIR": "off", "LOG_LEVEL": "warning", "PROMPT_CACHE_SIZE": 0,
                "REQUEST_TIMEOUT_SECONDS": 3600,  # a full-size model on a slow CPU
            }
        )  # fmt: skip
        engine = Engine(settings)
        engine.start()
        try:
            if not engine.wait_until_loaded(1800) or not engine.status().ready:
                raise SystemExit(f"the model did not load: {engine.status().error}")
            run(engine, args, size)
        finally:
            engine.stop(timeout=60)
    return 0


def run(engine: Engine, args: argparse.Namespace, size: int) -> None:
    """The rounds and the figures."""
    image, mask = inputs(size)
    prompt = "a red circle in the centre, on a white background"

    def request(seed: int, init: ImageInput | None = None) -> GenerationRequest:
        return GenerationRequest(prompt, "", size, size, args.steps, 5.0, seed, init_image=init)

    def timed(make) -> float:  # noqa: ANN001
        started = time.perf_counter()
        engine.generate(make)
        return time.perf_counter() - started

    figures("loaded")
    txt2img = [timed(request(seed)) for seed in range(args.rounds)]
    base = figures(f"after {args.rounds} txt2img")
    img2img = [timed(request(seed, ImageInput((image,), 0.5))) for seed in range(args.rounds)]
    figures("+ img2img", base)
    for seed in range(args.rounds):
        engine.generate(request(seed, ImageInput((image,), 0.75, mask)))
    figures("+ inpaint", base)
    for seed in range(args.rounds):  # all three again: steady, not creeping
        engine.generate(request(seed))
        engine.generate(request(seed, ImageInput((image,), 0.5)))
        engine.generate(request(seed, ImageInput((image,), 0.75, mask)))
    figures("+ all three again", base)
    # The first of each is a warm-up (the task pipeline is built then): medians of the rest.
    t2i, i2i = statistics.median(txt2img[1:] or txt2img), statistics.median(img2img[1:] or img2img)
    print(
        f"txt2img {args.steps} steps: {t2i:.3f} s; img2img at strength 0.5 "
        f"({int(args.steps * 0.5)} steps): {i2i:.3f} s; ratio {i2i / t2i:.2f} (expect about 0.5)"
    )


if __name__ == "__main__":
    sys.exit(main())
