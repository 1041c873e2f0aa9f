"""The pixels an img2img or inpaint call starts from: decoded inputs, masks, fills, overlays.

Pillow and numpy only. Output image i of a request starts from `images[i % len(images)]`, so
the lists built here have one entry per output image, in the order the images come out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from backend.model.errors import ImageTaskError
from backend.model.types import GenerationRequest

GREY = 127  # "latent nothing": the VAE's zero, as near as 8 bits get


def decode(data: bytes, mode: str) -> Image.Image:
    """PNG bytes (checked by the views) as a PIL image in `mode`."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert(mode)


def per_image(requests: Sequence[GenerationRequest]) -> list[tuple[GenerationRequest, int]]:
    """(request, index of its output image) for every output image of the call, in order."""
    return [(each, index) for each in requests for index in range(each.num_images)]


def inputs(requests: Sequence[GenerationRequest]) -> list[Image.Image]:
    """The input image each output image starts from (RGB), as the request's fill prepared it."""
    images = []
    for request, index in per_image(requests):
        given = request.init_image
        assert given is not None  # only img2img and inpaint calls get here
        image = decode(given.images[index % len(given.images)], "RGB")
        if given.mask is not None and given.fill != "original":
            seed = request.seeds()[index]
            image = prefill(image, decode(given.mask, "L"), given.fill, seed)
        images.append(image)
    return images


def originals(requests: Sequence[GenerationRequest]) -> list[Image.Image]:
    """The input images as given (no fill), one per output image."""
    return [
        decode(each.init_image.images[index % len(each.init_image.images)], "RGB")
        for each, index in per_image(requests)
    ]


def masks(requests: Sequence[GenerationRequest]) -> list[Image.Image]:
    """The mask of each output image (L, white = repaint)."""
    return [decode(each.init_image.mask, "L") for each, _ in per_image(requests)]


def prefill(image: Image.Image, mask: Image.Image, fill: str, seed: int) -> Image.Image:
    """What the masked area starts from, in pixels before the VAE encodes them (A1111's
    `inpainting_fill`): "fill" the surrounding colours (a normalised heavy blur of the unmasked
    pixels), "latent noise" random colours (from the image's seed), "latent nothing" grey."""
    pixels = np.asarray(image, dtype=np.float32)
    if fill == "fill":
        keep = (np.asarray(mask, dtype=np.float32) < 128).astype(np.float32)
        radius = max(image.size) / 8
        # Blurring colour*keep and keep alike and dividing spreads the unmasked colours inward.
        colours = _blur(pixels * keep[..., None], radius)
        weight = _blur(np.repeat(keep[..., None], 3, axis=2), radius)
        fallback = pixels.reshape(-1, 3).mean(axis=0)
        filled = np.where(weight > 1e-3, colours / np.maximum(weight, 1e-3), fallback)
    elif fill == "latent noise":
        filled = np.random.default_rng(seed).uniform(0, 255, pixels.shape)
    elif fill == "latent nothing":
        filled = np.full_like(pixels, GREY)
    else:
        raise ImageTaskError(f"Unknown inpainting fill {fill!r}.")
    result = Image.fromarray(np.clip(filled, 0, 255).astype(np.uint8))
    return Image.composite(result, image, mask)


def _blur(values: np.ndarray, radius: float) -> np.ndarray:
    """A near-Gaussian blur of float H x W x C values: three box blurs along each axis."""
    size = max(1, int(radius))
    for axis in (0, 1):
        for _ in range(3):
            values = _box(values, size, axis)
    return values


def _box(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """A box blur of width 2*size+1 along `axis`, edges repeated (cumulative sums: any size)."""
    padded = np.concatenate(
        [np.repeat(np.take(values, [0], axis), size + 1, axis), values,
         np.repeat(np.take(values, [-1], axis), size, axis)],
        axis=axis,
    )  # fmt: skip
    sums = np.cumsum(padded, axis=axis)
    count = values.shape[axis]
    upper = np.take(sums, range(2 * size + 1, 2 * size + 1 + count), axis)
    lower = np.take(sums, range(count), axis)
    return (upper - lower) / (2 * size + 1)


def overlay(drawn: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """The drawn image inside the (blurred) mask, the original's pixels outside it, as A1111
    pastes them: the VAE's round trip never changes the pixels nobody asked to repaint."""
    if drawn.size != original.size:
        drawn = drawn.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(drawn.convert("RGB"), original, mask)


def unchanged(requests: Sequence[GenerationRequest]) -> list[Image.Image]:
    """Strength 0 (no step to run: diffusers refuses a pass of none): the inputs as given."""
    return originals(requests)


def crop_box(mask: Image.Image, width: int, height: int, padding: int) -> tuple[int, ...]:
    """The masked area's box, `padding` pixels wider, grown to `width:height` (diffusers')."""
    from diffusers.image_processor import VaeImageProcessor

    return tuple(VaeImageProcessor.get_crop_region(mask, width, height, pad=padding))


def crop(images: Sequence[Image.Image], box: tuple[int, ...], size: tuple[int, int]) -> list:
    """Each image's `box`, scaled to `size`."""
    return [each.crop(box).resize(size, Image.Resampling.LANCZOS) for each in images]


def paste(
    drawn: Sequence[Image.Image], originals: Sequence[Image.Image], box: tuple[int, ...]
) -> list[Image.Image]:
    """Each drawn crop scaled back into its `box` of the original (the overlay follows)."""
    pasted = []
    for image, original in zip(drawn, originals, strict=True):
        canvas = original.copy()
        canvas.paste(
            image.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS), box[:2]
        )
        pasted.append(canvas)
    return pasted
