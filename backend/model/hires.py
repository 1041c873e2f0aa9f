"""Hires fix: draw at the request's size, upscale, then img2img at the final size on the same
weights, as AUTOMATIC1111 does.

"latent" upscales the first pass's latents (bilinear, A1111's "Latent") and never decodes them;
"lanczos" and "nearest" decode, resize the pixels with Pillow, and encode again. The second pass
runs `hires.steps` (or the request's steps) at `hires.strength`: `int(steps * strength)` steps,
from the same seeds. Progress counts both passes on one scale.
"""

from __future__ import annotations

from typing import Any

from backend.model import task_pipelines
from backend.model.catalogue import Family
from backend.model.errors import ImageTaskError
from backend.model.task_steps import strength_steps

_RESAMPLE = {"lanczos": "LANCZOS", "nearest": "NEAREST"}


def hires_fix(call: Any) -> list[Any]:
    """The images of a txt2img call with `hires` (task_call.TaskCall), at the hires size."""
    import torch
    from PIL import Image

    request, hires = call.request, call.request.hires
    second_steps = hires.steps or request.steps
    second = strength_steps(second_steps, hires.strength)
    latent = hires.upscaler == "latent"
    if latent and call.model.family not in (Family.SD, Family.SDXL):
        # SD3's and FLUX's latents are laid out (shifted, packed) for their own transformer.
        raise ImageTaskError(
            f"The latent upscaler works with SD and SDXL models; use lanczos or nearest for "
            f"{call.model.family.value}."
        )
    first = call.run(
        call.model.pipeline, request.steps, later=second,
        width=request.width, height=request.height, num_inference_steps=request.steps,
        output_type="latent" if latent and second else "pil",
    )  # fmt: skip
    call.notes["steps_run"] = request.steps + second
    if second == 0 or call.progress.stopped():
        # Nothing to denoise (or nobody wants the images): upscale what the first pass drew.
        pixels = decode_latents(call.model.pipeline, first) if latent and second else first
        return [
            each.resize((hires.width, hires.height), Image.Resampling.LANCZOS) for each in pixels
        ]
    if latent:
        # The first pass's latents, scaled as the VAE will decode them: size / the VAE's scale.
        scale = call.model.pipeline.vae_scale_factor
        size = (hires.height // scale, hires.width // scale)
        image: Any = torch.nn.functional.interpolate(first, size=size, mode="bilinear")
        if image.shape[1] != 4:
            # diffusers' img2img takes latents only with 4 channels (the trained demo has 8):
            # the upscaled latents are decoded, and the second pass encodes them again.
            image = decode_latents(call.model.pipeline, image)
    else:
        resample = getattr(Image.Resampling, _RESAMPLE[hires.upscaler])
        image = [each.resize((hires.width, hires.height), resample) for each in first]
    pipeline = task_pipelines.task_pipeline(call.model, task_pipelines.IMG2IMG)
    return call.run(
        pipeline, second, image=image, strength=hires.strength,
        num_inference_steps=second_steps, output_type="pil",
        **task_pipelines.size_arguments(pipeline, hires.width, hires.height),
    )  # fmt: skip


def decode_latents(pipeline: Any, latents: Any) -> list[Any]:
    """First-pass latents (SD/SDXL layout) as PIL images."""
    vae = pipeline.vae
    scaled = latents.to(vae.dtype) / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    images = vae.decode(scaled, return_dict=False)[0]
    return pipeline.image_processor.postprocess(images, output_type="pil")
