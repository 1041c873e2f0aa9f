"""`make demo-quality`: how well the demo model follows its prompts, measured, not hoped for.

It draws every prompt of `prompts.quality_prompts()` over several seeds, scores each image with
`measures.py`, and prints the share of correct colours, positions and shapes against the
targets; then how a negative prompt and the guidance scale change things.

    python -m demo_model.quality [--model demo_model/weights] [--seeds 4] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import backend  # noqa: F401  (forces the hub offline before diffusers is imported)
from backend.model.demo_trained import TRAINED_WEIGHTS
from demo_model.architecture import NATIVE_SIZE
from demo_model.measures import colour_share, find_object
from demo_model.prompts import Prompt, quality_prompts
from demo_model.vocabulary import PAIRS

TARGETS = {"colour": 0.90, "position": 0.85, "shape": 0.75}
NEGATIVE_CHECK = "a red circle and a blue square"


@dataclass
class Tally:
    """Correct answers over asked ones, per measure."""

    right: dict[str, int]
    asked: dict[str, int]

    @classmethod
    def empty(cls) -> Tally:
        """No answers yet."""
        return cls(dict.fromkeys(TARGETS, 0), dict.fromkeys(TARGETS, 0))

    def add(self, measure: str, ok: bool) -> None:
        """Count one answer."""
        self.asked[measure] += 1
        self.right[measure] += int(ok)

    def share(self, measure: str) -> float:
        """The share of right answers for `measure`."""
        return self.right[measure] / max(1, self.asked[measure])

    def adherence(self) -> float:
        """The mean share over the three measures."""
        return sum(self.share(m) for m in TARGETS) / len(TARGETS)


def score(prompt: Prompt, image: np.ndarray, tally: Tally) -> None:
    """Score one image: each object alone, or each in its half of the image for two."""
    height, width = image.shape[:2]
    for index, asked in enumerate(prompt.objects):
        region = None
        if len(prompt.objects) == 2:  # the half of the image this object was asked to be in
            region = np.zeros((height, width), dtype=bool)
            horizontal = asked.position in PAIRS[0]
            first = asked.position in ("left", "top")
            cut = (width if horizontal else height) // 2
            span = slice(0, cut) if first else slice(cut, None)
            if horizontal:
                region[:, span] = True
            else:
                region[span, :] = True
        found = find_object(image, region)
        tally.add("colour", found.colour == asked.colour)
        tally.add("shape", found.shape == asked.shape)
        # Two objects: the one asked for on the left must be there, in its own colour.
        place_ok = (
            found.position == asked.position if region is None else found.colour == asked.colour
        )
        tally.add("position", place_ok and index >= 0)


def load(folder: Path):  # noqa: ANN201
    """The pipeline, loaded the way the server loads it: local safetensors only, float32."""
    import torch
    from diffusers import AutoPipelineForText2Image

    pipeline = AutoPipelineForText2Image.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, dtype=torch.float32
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def draw(  # noqa: PLR0917 (the sweep's knobs, positional at every call)
    pipeline: Any,
    prompts: list[str],
    seeds: list[int],
    steps: int,
    guidance: float,
    negative: str | None = None,
    size: int = NATIVE_SIZE,
) -> list[np.ndarray]:
    """One image per (prompt, seed), each from its own CPU generator, as the server seeds them."""
    import torch

    texts = [p for p in prompts for _ in seeds]
    generators = [torch.Generator().manual_seed(s) for _ in prompts for s in seeds]
    images = []
    for start in range(0, len(texts), 16):
        out = pipeline(
            texts[start : start + 16],
            negative_prompt=None
            if negative is None
            else [negative] * len(texts[start : start + 16]),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators[start : start + 16],
            height=size,
            width=size,
        ).images
        images += [np.asarray(image.convert("RGB")) for image in out]
    return images


def evaluate(
    pipeline,  # noqa: ANN001
    seeds: list[int],
    steps: int,
    guidance: float,
    size: int = NATIVE_SIZE,
) -> Tally:
    """The tally over the whole prompt set."""
    prompts = quality_prompts()
    texts = [p.text for p in prompts]
    images = draw(pipeline, texts, seeds, steps, guidance, size=size)
    tally = Tally.empty()
    for index, image in enumerate(images):
        score(prompts[index // len(seeds)], image, tally)
    return tally


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description="Measure how well the demo model follows prompts.")
    parser.add_argument("--model", type=Path, default=TRAINED_WEIGHTS)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=NATIVE_SIZE, help="image side in pixels")
    args = parser.parse_args(argv)
    pipeline = load(args.model)
    seeds = list(range(args.seeds))
    tally = evaluate(pipeline, seeds, args.steps, args.guidance, args.size)
    count = len(quality_prompts()) * len(seeds)
    print(f"{count} images of {args.size}x{args.size}, {args.steps} steps, ", end="")
    print(f"guidance {args.guidance}\n")
    print("| measure | correct | target |\n|---|---|---|")
    missed = []
    for measure, target in TARGETS.items():
        share = tally.share(measure)
        print(f"| {measure} | {share:.0%} | ≥ {target:.0%} |")
        if share < target:
            missed.append(measure)
    # A prompt with red in it, so that taking red away has something to take.
    many = list(range(len(seeds) * 4))
    red, no_red = (
        [
            colour_share(i, "red")
            for i in draw(pipeline, [NEGATIVE_CHECK], many, args.steps, args.guidance, n, args.size)
        ]
        for n in (None, "red")
    )
    print(f"\nred share of '{NEGATIVE_CHECK}': {np.mean(red):.1%}; ", end="")
    print(f"with the negative prompt 'red': {np.mean(no_red):.1%}")
    if np.mean(no_red) >= np.mean(red):
        missed.append("negative prompt")
    low = evaluate(pipeline, seeds, args.steps, 1.0, args.size).adherence()
    high = tally.adherence()
    print(f"adherence (mean of the three): guidance 1.0 {low:.0%}, ", end="")
    print(f"guidance {args.guidance} {high:.0%}")
    if high <= low:
        missed.append("guidance")
    print("\nall targets met" if not missed else f"\nmissed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
