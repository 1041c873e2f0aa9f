"""Draw the diagrams in docs/ from their TOML sources with Pillow: `make images`.

    python docs/diagrams/draw.py docs/diagrams/scale-out.toml [...] [--out .images]

A source lists boxes (id, label, x, y, w, h, fill) and arrows (from, to, label, offset, side:
where a vertical arrow's label goes). An
arrow leaves and enters the facing sides of its boxes; `offset` shifts it sideways, so that two
arrows between the same boxes stay apart. The output is deterministic for a Pillow version.
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

Point = tuple[float, float]
FONT_SIZE = 15


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _ends(a: dict, b: dict, offset: float) -> tuple[Point, Point]:
    """Where an arrow from box `a` to box `b` leaves and enters: the sides that face."""
    ax, ay = a["x"] + a["w"] / 2, a["y"] + a["h"] / 2
    bx, by = b["x"] + b["w"] / 2, b["y"] + b["h"] / 2
    horizontal = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
    if horizontal:
        sign = 1 if bx > ax else -1
        start = (ax + sign * a["w"] / 2, ay + offset)
        end = (bx - sign * b["w"] / 2, by + offset)
    else:
        sign = 1 if by > ay else -1
        start = (ax + offset, ay + sign * a["h"] / 2)
        end = (bx + offset, by - sign * b["h"] / 2)
    return start, end


def _arrow(draw: ImageDraw.ImageDraw, start: Point, end: Point, label: str, side: str) -> None:
    draw.line((start, end), fill="#2d3748", width=2)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    head = [
        end,
        (end[0] - 12 * math.cos(angle - 0.4), end[1] - 12 * math.sin(angle - 0.4)),
        (end[0] - 12 * math.cos(angle + 0.4), end[1] - 12 * math.sin(angle + 0.4)),
    ]
    draw.polygon(head, fill="#2d3748")
    font = _font(13)
    width = draw.textlength(label, font=font)
    x, y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    if abs(end[0] - start[0]) >= abs(end[1] - start[1]):  # mostly horizontal: above the line
        x, y = x - width / 2, y - 20
    else:  # mostly vertical: beside it, on `side`
        x, y = (x - width - 8 if side == "left" else x + 8), y - 8
    draw.text((x, y), label, fill="#1a202c", font=font)


def draw(source: dict) -> Image.Image:
    """The picture a parsed TOML source describes."""
    image = Image.new("RGB", (source["width"], source["height"]), "white")
    canvas = ImageDraw.Draw(image)
    canvas.text((20, 10), source["title"], fill="black", font=_font(17))
    boxes = {box["id"]: box for box in source["box"]}
    for box in boxes.values():
        corners = (box["x"], box["y"], box["x"] + box["w"], box["y"] + box["h"])
        canvas.rounded_rectangle(corners, radius=10, fill=box["fill"], outline="#4a5568", width=2)
        lines = box["label"].split("\n")
        for index, line in enumerate(lines):
            top = box["y"] + box["h"] / 2 + (index - len(lines) / 2) * (FONT_SIZE + 5) + 2
            canvas.text((box["x"] + 12, top), line, fill="black", font=_font())
    for arrow in source.get("arrow", []):
        start, end = _ends(boxes[arrow["from"]], boxes[arrow["to"]], arrow.get("offset", 0))
        _arrow(canvas, start, end, arrow["label"], arrow.get("side", "right"))
    return image


def main(argv: list[str] | None = None) -> int:
    """Draw every source given to `<out>/<source name>.png`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path(".images"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.sources:
        target = args.out / f"{path.stem}.png"
        draw(tomllib.loads(path.read_text())).save(target, optimize=True)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
