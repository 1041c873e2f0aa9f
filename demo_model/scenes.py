"""Synthetic training scenes: one or two coloured shapes on a background, drawn with Pillow and
captioned in the demo's vocabulary. Everything is drawn from a `random.Random`, so a seed fixes
the whole data set."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from demo_model.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    PAIRS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    SIZE_WORDS,
    SIZES,
)

SUPERSAMPLE = 4  # drawn this much larger, then shrunk: smooth edges, as a photo would have
STAR_INNER = 0.42  # a star's inner radius over its outer one
RING_INNER = 0.5  # a ring's hole over its width
JITTER = 0.04  # how far an object strays from its named position, as a fraction of the image


@dataclass(frozen=True)
class Shape:
    """One object: what it is, and where its centre stands (fractions of the image)."""

    colour: str
    shape: str
    size: str
    position: str | None  # a named position, or None where it was placed anywhere
    x: float
    y: float


@dataclass(frozen=True)
class Scene:
    """A background and the objects on it."""

    background: str
    objects: tuple[Shape, ...]


def random_scene(rng: random.Random, two_objects: float = 0.35) -> Scene:
    """A scene as the training data has them: held-out colour-shape pairs never appear."""
    count = 2 if rng.random() < two_objects else 1
    colours = [c for c in COLOURS]
    picked = []
    for _ in range(count):
        while True:
            colour, shape = rng.choice(colours), rng.choice(SHAPES)
            if (colour, shape) not in HELD_OUT and all(colour != p[0] for p in picked):
                break
        picked.append((colour, shape))
    background = rng.choice([b for b in BACKGROUNDS if all(b != c for c, _ in picked)])
    if count == 1:
        size = rng.choice(list(SIZES))
        named = rng.random() < 0.75
        position = rng.choice(list(POSITIONS)) if named else None
        return Scene(background, (place(rng, *picked[0], size, position),))
    places = rng.choice(PAIRS)
    if rng.random() < 0.5:
        places = places[::-1]
    sizes = [rng.choice(["small", "medium"]) for _ in range(2)]
    objects = tuple(
        place(rng, colour, shape, size, where)
        for (colour, shape), size, where in zip(picked, sizes, places, strict=True)
    )
    return Scene(background, objects)


def place(rng: random.Random, colour: str, shape: str, size: str, position: str | None) -> Shape:
    """One object of `size` at its named `position` (give or take JITTER), or anywhere it fits."""
    half = SIZES[size] / 2
    if position is None:  # anywhere it fits
        x, y = (rng.uniform(half + 0.03, 1 - half - 0.03) for _ in range(2))
    else:
        ax, ay = POSITIONS[position]
        x, y = ax + rng.uniform(-JITTER, JITTER), ay + rng.uniform(-JITTER, JITTER)
        x, y = (min(max(v, half + 0.01), 1 - half - 0.01) for v in (x, y))
    return Shape(colour, shape, size, position, x, y)


def caption(scene: Scene, rng: random.Random) -> str:
    """A caption for `scene`: each detail said or left out at random, as people write."""
    if len(scene.objects) == 1 and rng.random() < 0.08:  # a bare word: "red", "circle"
        only = scene.objects[0]
        # The background's colour too: "red" is anything red, so that a negative prompt "red"
        # pushes away from red backgrounds as well, not towards them (an object is never drawn
        # on its own colour, so a "red" that meant only objects would mean "not a red background").
        return rng.choice((only.colour, only.shape, scene.background))
    say_places = rng.random() < 0.85
    phrases = [_object_phrase(o, rng, say_places) for o in scene.objects]
    text = " and ".join(phrases)
    if rng.random() < 0.7:
        text += rng.choice([", on a ", " on a "]) + f"{scene.background} background"
    return text


def _object_phrase(obj: Shape, rng: random.Random, say_place: bool) -> str:
    words = []
    if obj.size in SIZE_WORDS and rng.random() < 0.8:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    say_colour, say_shape = rng.random() < 0.9, rng.random() < 0.9
    if not (say_colour or say_shape):
        say_colour = say_shape = True
    if say_colour:
        words.append(obj.colour)
    words.append(obj.shape if say_shape else "shape")
    if obj.position is not None and say_place:
        words.append(rng.choice(POSITION_PHRASES[obj.position]))
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def render(scene: Scene, width: int, height: int | None = None) -> Image.Image:
    """`scene` as an RGB image of `width` x `height` pixels."""
    height = height or width
    big_w, big_h = width * SUPERSAMPLE, height * SUPERSAMPLE
    image = Image.new("RGB", (big_w, big_h), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        side = SIZES[obj.size] * min(big_w, big_h)
        _draw_shape(draw, obj.shape, obj.x * big_w, obj.y * big_h, side, obj.colour, scene)
    return image.resize((width, height), Image.Resampling.BOX)


def _draw_shape(  # noqa: PLR0917 (a drawing primitive: every argument is geometry)
    draw: ImageDraw.ImageDraw,
    shape: str,
    x: float,
    y: float,
    side: float,
    colour: str,
    scene: Scene,
) -> None:
    fill, r = COLOURS[colour], side / 2
    box = (x - r, y - r, x + r, y + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r * 0.8), (x + r, y + r * 0.8)], fill=fill)
    elif shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * STAR_INNER
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((x + radius * math.cos(angle), y + r * 0.1 + radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, fill=fill)
        hole = r * RING_INNER
        draw.ellipse((x - hole, y - hole, x + hole, y + hole), fill=COLOURS[scene.background])
    else:
        raise ValueError(f"unknown shape {shape!r}")
