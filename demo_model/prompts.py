"""The held-out prompts `make demo-quality` asks for, and what each one expects.

Half the single-object prompts name a colour-shape pair that training never drew; every prompt
names its position and background, so each measure has an answer to check.
"""

from __future__ import annotations

from dataclasses import dataclass

from demo_model.vocabulary import HELD_OUT, PAIRS, POSITION_PHRASES

# (colour, shape, position, background), for the pairs training did draw.
_SEEN = (
    ("blue", "circle", "left", "white"),
    ("red", "square", "right", "black"),
    ("yellow", "star", "top", "blue"),
    ("green", "ring", "bottom", "white"),
    ("purple", "triangle", "centre", "yellow"),
    ("orange", "circle", "right", "gray"),
    ("white", "square", "left", "red"),
    ("pink", "triangle", "bottom", "black"),
)
_POSITIONS = ("left", "right", "top", "bottom", "centre")
_BACKGROUNDS = ("white", "black", "gray", "white")
# Two objects: (colour, shape) each, in the pair of places of PAIRS[index], on a background
# that is neither object's colour (training never hides an object in its background).
_TWO = (
    (("red", "circle"), ("blue", "square"), 0, "white"),
    (("yellow", "triangle"), ("green", "circle"), 1, "black"),
    (("white", "star"), ("orange", "square"), 0, "gray"),
    (("cyan", "circle"), ("red", "triangle"), 1, "black"),
)


@dataclass(frozen=True)
class Asked:
    """One object a prompt asks for."""

    colour: str
    shape: str
    position: str


@dataclass(frozen=True)
class Prompt:
    """A prompt and what it asks for."""

    text: str
    objects: tuple[Asked, ...]
    background: str
    held_out: bool  # names a colour-shape pair never drawn in training


def _phrase(asked: Asked) -> str:
    article = "an" if asked.colour[0] in "aeiou" else "a"
    return f"{article} {asked.colour} {asked.shape} {POSITION_PHRASES[asked.position][0]}"


def _prompt(objects: tuple[Asked, ...], background: str) -> Prompt:
    text = " and ".join(_phrase(o) for o in objects) + f", on a {background} background"
    held = any((o.colour, o.shape) in HELD_OUT for o in objects)
    return Prompt(text, objects, background, held)


def quality_prompts() -> list[Prompt]:
    """The fixed prompt set: the held-out pairs in turn at every position, the seen ones, pairs."""
    found = []
    for index, (colour, shape) in enumerate(sorted(HELD_OUT)):
        position = _POSITIONS[index % len(_POSITIONS)]
        background = _BACKGROUNDS[index % len(_BACKGROUNDS)]
        found.append(_prompt((Asked(colour, shape, position),), background))
    found += [_prompt((Asked(c, s, p),), b) for c, s, p, b in _SEEN]
    for first, second, pair, background in _TWO:
        places = PAIRS[pair]
        objects = (Asked(*first, places[0]), Asked(*second, places[1]))
        found.append(_prompt(objects, background))
    return found
