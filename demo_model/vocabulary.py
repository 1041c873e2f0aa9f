"""What the trained demo model knows: its colours, shapes, positions and sizes, in one place.

The renderer, the captions, the tokenizer and the quality measures all derive from these tables,
so a word added here is drawn, said, tokenized as one token and scored.
"""

from __future__ import annotations

# name -> RGB. Hues far apart, so the nearest palette colour of a pixel is unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 220, 20),
    "green": (30, 170, 50),
    "cyan": (0, 200, 220),
    "blue": (30, 60, 220),
    "purple": (140, 40, 200),
    "pink": (255, 110, 190),
    "brown": (130, 75, 30),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
BACKGROUNDS = tuple(COLOURS)  # any colour can be the background (never the object's own)

SHAPES = ("circle", "square", "triangle", "star", "ring")

# position -> the centre of an object there, as fractions of the image's width and height.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "centre": (0.5, 0.5),
}
# How a caption says each position (the first is the canonical phrase).
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left",),
    "right": ("on the right",),
    "top": ("at the top",),
    "bottom": ("at the bottom",),
    "centre": ("in the centre", "in the center", "in the middle"),
}
# The pairs two objects can stand in, so that they never overlap.
PAIRS = (("left", "right"), ("top", "bottom"))

# size -> the object's width as a fraction of the image's. Medium is what no word means.
SIZES: dict[str, float] = {"small": 0.22, "medium": 0.34, "large": 0.52}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small",), "large": ("large", "big")}

# Colour-shape pairs never drawn in training: the quality check asks for them.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("blue", "ring"),
        ("green", "triangle"),
        ("yellow", "square"),
        ("purple", "circle"),
        ("orange", "ring"),
        ("cyan", "star"),
        ("pink", "square"),
    }
)

GRAMMAR_WORDS = ("a", "an", "the", "on", "at", "in", "and", "background", "shape")


def words() -> list[str]:
    """Every word a caption can use, each one token to the demo tokenizer."""
    phrases = [p for options in POSITION_PHRASES.values() for p in options]
    sized = [w for options in SIZE_WORDS.values() for w in options]
    found = [*GRAMMAR_WORDS, *COLOURS, *SHAPES, *sized]
    found += [w for phrase in phrases for w in phrase.split()]
    return sorted(set(found))
