"""How far a micro-batched image differs from the same request run alone.

    python -m bench.batch_fidelity [--model demo] [--device cpu] [--size 256] [--steps 4]
                                   [--count 4]

Runs `count` requests (different prompts and seeds) one at a time, then all together as one
micro-batch, through the server's own engine, and compares the decoded PNGs: the largest
per-channel difference (0-255), the share of differing pixels, and the PSNR (dB; inf when
identical). Batched matrix products are rounded differently from single ones, so tiny
differences are expected; anything visible would show as a low PSNR.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

import backend  # noqa: F401  (hub offline before diffusers is imported)
from backend.config import load_settings
from backend.model.engine import Engine
from backend.model.types import GenerationRequest

PROMPTS = ("a red fox in snow", "a lighthouse at dusk", "a bowl of ramen", "an old map")


@dataclass(frozen=True)
class Fidelity:
    """Batched against alone, over every image."""

    images: int
    batch_size: int  # images in the batched pipeline call
    max_difference: int  # largest |batched - alone| of any channel of any pixel, 0-255
    differing_pixels: float  # share of pixels with any difference
    psnr_db: float  # lowest over the images; inf when identical

    @property
    def identical(self) -> bool:
        """Byte for byte the same pixels."""
        return self.max_difference == 0


def compare(overrides: dict[str, Any], size: int, steps: int, count: int) -> Fidelity:
    """Run `count` requests alone, then batched, on an engine built with `overrides`."""
    requests = [
        GenerationRequest(
            prompt=PROMPTS[index % len(PROMPTS)],
            negative_prompt="",
            width=size,
            height=size,
            steps=steps,
            guidance_scale=5.0,
            seed=1000 + index,
        )
        for index in range(count)
    ]
    alone = _run(overrides | {"MAX_BATCH_SIZE": 1}, requests)
    together = _run(overrides | {"MAX_BATCH_SIZE": count, "BATCH_WAIT_MS": 5000}, requests)
    batch_sizes = {batch for _, batch in together}
    diffs = [
        np.abs(_pixels(a) - _pixels(b)) for (a, _), (b, _) in zip(alone, together, strict=True)
    ]
    worst = min(_psnr(d) for d in diffs)
    return Fidelity(
        images=count,
        batch_size=max(batch_sizes),
        max_difference=int(max(d.max() for d in diffs)),
        differing_pixels=float(np.mean([(d > 0).any(axis=2).mean() for d in diffs])),
        psnr_db=worst,
    )


def _run(overrides: dict[str, Any], requests: list[GenerationRequest]) -> list[tuple[bytes, int]]:
    engine = Engine(load_settings({"JOBS_DIR": "off", **overrides}))  # nothing to keep
    engine.start()
    try:
        if not engine.wait_until_loaded(600) or not engine.status().ready:
            raise SystemExit(f"the model did not load: {engine.status().error}")
        # Submitted together, so the worker finds them all queued (BATCH_WAIT_MS covers the rest).
        ids = [engine.submit_job(request).id for request in requests]
        deadline = time.monotonic() + 600
        jobs = [engine.job(job_id) for job_id in ids]
        while any(not job.status.final for job in jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
            jobs = [engine.job(job_id) for job_id in ids]
        results = []
        for job in jobs:
            if job.error is not None or not job.status.final:
                raise SystemExit(f"job failed: {job.error or job.status}")
            results.append((engine.job_result(job.id).images[0].data, job.batch_size))
        return results
    finally:
        engine.stop(timeout=60)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _psnr(difference: np.ndarray) -> float:
    mse = float(np.mean(difference.astype(np.float64) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    """Print the comparison for one model and device."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo", help="DEFAULT_MODEL: a name or a folder")
    parser.add_argument("--device", default="auto", help="DEVICE: cpu, cuda, cuda:N or auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    overrides = {"DEFAULT_MODEL": args.model, "DEVICE": args.device, "LOG_LEVEL": "warning"}
    result = compare(overrides, args.size, args.steps, args.count)
    print(json.dumps({**asdict(result), **vars(args)}, indent=2))


if __name__ == "__main__":
    main()
