"""Encoding generated images, with their generation parameters embedded where readers look."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from backend.model.types import EncodedImage, GenerationRequest, OutputOptions

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
DEFAULT_QUALITY = 90  # jpeg/webp: visually lossless for generated images at a fraction of PNG
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp keeps archives byte-reproducible


def encode(
    image: Image.Image, seed: int, options: OutputOptions, parameters: str | None = None
) -> EncodedImage:
    """Encode `image`; `parameters` goes into a PNG `parameters` text chunk (AUTOMATIC1111's)."""
    buffer = io.BytesIO()
    if options.format == "png":
        info = None
        if parameters is not None:
            info = PngInfo()
            info.add_text("parameters", parameters)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        quality = DEFAULT_QUALITY if options.quality is None else options.quality
        image.save(buffer, format=options.format.upper(), quality=quality)
    return EncodedImage(buffer.getvalue(), MEDIA_TYPES[options.format], seed)


def infotext(request: GenerationRequest, seed: int, sampler: str, model: str) -> str:
    """Generation parameters in AUTOMATIC1111's layout, which PNG-info readers parse."""
    lines = [request.prompt]
    if request.negative_prompt:  # AUTOMATIC1111 leaves the line out when there is none
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(
        f"Steps: {request.steps}, Sampler: {sampler}, CFG scale: {request.guidance_scale:g}, "
        f"Seed: {seed}, Size: {request.width}x{request.height}, Model: {model}"
    )
    return "\n".join(lines)


def zip_images(images: Iterable[EncodedImage]) -> bytes:
    """A ZIP of `images` (stored, not recompressed), named `<index>-<seed>.<ext>` in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, image in enumerate(images, start=1):
            entry = zipfile.ZipInfo(f"{index:02d}-{image.seed}.{image.extension}", _ZIP_EPOCH)
            archive.writestr(entry, image.data)
    return buffer.getvalue()
