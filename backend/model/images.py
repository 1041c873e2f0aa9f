"""Encoding generated images, with their generation parameters embedded where readers look."""

from __future__ import annotations

import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from backend.model.job import Job
from backend.model.types import EncodedImage, GenerationRequest, GenerationResult, OutputOptions

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
DEFAULT_QUALITY = 90  # jpeg/webp: visually lossless for generated images at a fraction of PNG


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
        + (f", Clip skip: {request.clip_skip}" if request.clip_skip else "")
    )
    return "\n".join(lines)


def encode_job(job: Job, embed_metadata: bool) -> GenerationResult:
    """The result of a job whose images are drawn: each encoded, parameters embedded in PNGs."""
    raw, request, output, spec = job.raw, job.request, job.output, job.spec
    assert raw is not None and spec is not None  # only called once the images are drawn
    embed = embed_metadata and output.format == "png"
    images = [
        encode(
            image,
            seed,
            output,
            infotext(request, seed, raw.scheduler.label, spec.name) if embed else None,
        )
        for image, seed in zip(raw.images, request.seeds(), strict=True)
    ]
    return GenerationResult(
        images=images,
        model=spec.name,
        request=request,
        scheduler=raw.scheduler.name,
        sampler=raw.scheduler.label,
        generation_seconds=job.run_seconds(),
        queue_seconds=job.queue_seconds(),
        notes=dict(raw.notes),
    )
