"""Simple image measures that say whether a picture shows what its prompt asked for.

- **colour**: the palette colour most of the object's pixels are nearest to;
- **position**: the named position whose anchor is nearest the object's centroid;
- **shape**: a ring has a hole; the other shapes are told apart by fill ratio (area over
  bounding box) and corner count (peaks in the distance from the centroid to the outline, by
  angle), compared with the renderer's own clean shapes at the native size.

An object is the largest connected region unlike the background, cut where its pixels turn
nearer the background's colour than its own.

Every function takes an RGB image as a (height, width, 3) uint8 array.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cache

import numpy as np

from demo_model.vocabulary import COLOURS, POSITIONS, SHAPES

PALETTE_NAMES = tuple(COLOURS)
PALETTE = np.array([COLOURS[name] for name in PALETTE_NAMES], dtype=np.float32)
FOREGROUND_DISTANCE = 80.0  # RGB distance from the background that makes a pixel foreground
MIN_OBJECT_SHARE = 0.004  # an object smaller than this share of the image is no object
# A corner miscounted weighs as much as a twentieth off the fill ratio, and at most two are
# counted: fill tells most shapes apart, corners only triangles from stars.
CORNER_WEIGHT = 0.5


@dataclass(frozen=True)
class Found:
    """What the measures see of one object."""

    colour: str | None
    position: str | None
    shape: str | None


def nearest_colours(image: np.ndarray) -> np.ndarray:
    """Each pixel's nearest palette colour, as an index into PALETTE_NAMES."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    distances = ((pixels[:, None, :] - PALETTE[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1).reshape(image.shape[:2])


def colour_share(image: np.ndarray, colour: str) -> float:
    """The share of the image's pixels whose nearest palette colour is `colour`."""
    return float((nearest_colours(image) == PALETTE_NAMES.index(colour)).mean())


def background_of(image: np.ndarray) -> np.ndarray:
    """The background colour: the median of the border pixels."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(border.astype(np.float32), axis=0)


def foreground(image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """A boolean mask of the pixels that are not background."""
    background = background_of(image) if background is None else background
    distance = np.sqrt(((image.astype(np.float32) - background) ** 2).sum(axis=2))
    return distance > FOREGROUND_DISTANCE


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of `mask`."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, label = 0, 0, 0
    height, width = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        if labels[y, x]:
            continue
        label += 1
        labels[y, x], size, queue = label, 0, deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            size += 1
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if size > best_size:
            best, best_size = label, size
    return labels == best if best else mask & False


def hole_share(mask: np.ndarray) -> float:
    """The share of the object's outline-enclosed area that is a hole (a ring's is ~0.25)."""
    outside = largest_component_touching_border(~mask)
    holes = ~mask & ~outside
    return float(holes.sum() / max(1, holes.sum() + mask.sum()))


def largest_component_touching_border(free: np.ndarray) -> np.ndarray:
    """The pixels of `free` reachable from the image's border through `free`."""
    reached = np.zeros(free.shape, dtype=bool)
    height, width = free.shape
    queue = deque((y, x) for y in range(height) for x in (0, width - 1) if free[y, x])
    queue.extend((y, x) for x in range(width) for y in (0, height - 1) if free[y, x])
    for y, x in queue:
        reached[y, x] = True
    while queue:
        cy, cx = queue.popleft()
        for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
            if 0 <= ny < height and 0 <= nx < width and free[ny, nx] and not reached[ny, nx]:
                reached[ny, nx] = True
                queue.append((ny, nx))
    return reached


def shape_features(mask: np.ndarray) -> tuple[float, int]:
    """(fill ratio, corner count) of an object's mask."""
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = len(ys) / box
    cy, cx = ys.mean(), xs.mean()
    bins = 72
    angles = ((np.arctan2(ys - cy, xs - cx) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    radii = np.hypot(ys - cy, xs - cx)
    profile = np.zeros(bins)
    np.maximum.at(profile, angles, radii)
    profile = np.where(profile > 0, profile, np.median(profile))
    smooth = (np.roll(profile, 1) + profile + np.roll(profile, -1)) / 3
    window = 5  # a corner is the farthest point within 25 degrees either side
    neighbours = np.stack([np.roll(smooth, k) for k in range(-window, window + 1)])
    # A corner stands out by a tenth of the mean radius and at least a pixel: a small
    # circle's steps of one pixel are no corners.
    peaks = (smooth >= neighbours.max(axis=0)) & (
        smooth > max(1.1 * smooth.mean(), smooth.mean() + 1)
    )
    # A corner whose farthest point spans two bins ties with itself: count runs, not bins.
    return float(fill), int((peaks & ~np.roll(peaks, 1)).sum())


@cache
def _prototypes() -> dict[str, tuple[float, int]]:
    """The features of the renderer's own clean shapes at the demo's native size (ring aside:
    it has its hole)."""
    from demo_model.architecture import NATIVE_SIZE
    from demo_model.scenes import Scene, Shape, render

    found = {}
    for shape in SHAPES:
        scene = Scene("white", (Shape("black", shape, "medium", "centre", 0.5, 0.5),))
        found[shape] = shape_features(foreground(np.asarray(render(scene, NATIVE_SIZE))))
    return found


def classify_shape(mask: np.ndarray) -> str:
    """The shape whose clean rendering has the nearest (fill, corners)."""
    if hole_share(mask) > 0.08:
        return "ring"
    fill, corners = shape_features(mask)
    candidates = {k: v for k, v in _prototypes().items() if k != "ring"}
    return min(
        candidates,
        key=lambda name: (
            abs(fill - candidates[name][0]) / 0.1
            + CORNER_WEIGHT * min(2, abs(corners - candidates[name][1]))
        ),
    )


def nearest_position(mask: np.ndarray) -> str:
    """The named position nearest the mask's centroid."""
    ys, xs = np.nonzero(mask)
    x, y = xs.mean() / mask.shape[1], ys.mean() / mask.shape[0]
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - x) ** 2 + (POSITIONS[p][1] - y) ** 2)


def object_mask(image: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """The pixels of the biggest object in `image` (or in its `region` mask), cut where the
    object's colour and the background's meet.

    A fixed distance from the background would count an edge's blur as object: a soft star
    would read as a blob. So the object's colour is taken from its core (the half of the rough
    mask farthest from the background), and a pixel belongs to the object where it is nearer
    that colour than the background's."""
    background = background_of(image)
    rough = foreground(image, background)
    if region is not None:
        rough &= region
    rough = largest_component(rough)
    if not rough.any():
        return rough
    pixels = image.astype(np.float32)
    from_background = np.sqrt(((pixels - background) ** 2).sum(axis=2))
    core = rough & (from_background >= np.median(from_background[rough]))
    colour = np.median(pixels[core], axis=0)
    nearer = np.sqrt(((pixels - colour) ** 2).sum(axis=2)) < from_background
    return largest_component(rough & nearer)


def find_object(image: np.ndarray, region: np.ndarray | None = None) -> Found:
    """The biggest object in `image` (or in its `region` mask): colour, position, shape."""
    mask = object_mask(image, region)
    if mask.sum() < MIN_OBJECT_SHARE * mask.size:
        return Found(None, None, None)
    colours = nearest_colours(image)[mask]
    colour = PALETTE_NAMES[int(np.bincount(colours, minlength=len(PALETTE_NAMES)).argmax())]
    return Found(colour, nearest_position(mask), classify_shape(mask))
