"""A grid of prompts and what the trained demo draws for them (seed 0), as one PNG.

python -m demo_model.grid [--model demo_model/weights] [--out demo-grid.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

import backend  # noqa: F401  (forces the hub offline before diffusers is imported)
from backend.model.demo_trained import TRAINED_WEIGHTS

PROMPTS = (
    "a red circle on the left and a blue square on the right, on a white background",
    "a yellow star in the centre, on a black background",
    "a large green ring, on a white background",
    "a small purple triangle at the top, on a gray background",
    "an orange square at the bottom, on a blue background",
    "a red star on the right, on a white background",
    "a pink circle at the top and a cyan triangle at the bottom, on a black background",
    "a sunset over mountains",
)
CELL, CAPTION = 128, 44  # image side and caption height, in pixels


def wrap(text: str, width: int = 22) -> str:
    """`text` broken into lines of at most `width` characters."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def main(argv: list[str] | None = None) -> int:
    """Command line: draw the grid (seed 0, the model's default steps and guidance)."""
    import torch

    from demo_model.architecture import NATIVE_SIZE
    from demo_model.quality import load

    parser = argparse.ArgumentParser(description="Draw the demo model's prompt grid.")
    parser.add_argument("--model", type=Path, default=TRAINED_WEIGHTS)
    parser.add_argument("--out", type=Path, default=Path("demo-grid.png"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=NATIVE_SIZE, help="generated side, pixels")
    args = parser.parse_args(argv)
    pipeline = load(args.model)
    images = pipeline(
        list(PROMPTS),
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=[torch.Generator().manual_seed(0) for _ in PROMPTS],
        width=args.size,
        height=args.size,
    ).images
    # Shown at one cell's size whatever the size drawn: pixels enlarged, not smoothed.
    images = [image.resize((CELL, CELL), Image.Resampling.NEAREST) for image in images]
    columns = 4
    rows = (len(PROMPTS) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (CELL + 8) + 8, rows * (CELL + CAPTION + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=10)
    for index, (prompt, image) in enumerate(zip(PROMPTS, images, strict=True)):
        x = 8 + (index % columns) * (CELL + 8)
        y = 8 + (index // columns) * (CELL + CAPTION + 8)
        sheet.paste(image, (x, y))
        draw.multiline_text((x, y + CELL + 3), wrap(prompt), fill="black", font=font, spacing=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
