"""The img2img and inpainting pipelines of a loaded model, on the same weights as its txt2img one.

`AutoPipelineForImage2Image.from_pipe(pipe)` builds the task's pipeline class around the very
module objects of `pipe` (UNet/transformer, VAE, text encoders, tokenizers, scheduler): no
weight is copied or moved, so a model serving all three tasks holds its weights once (measured
in bench/task_memory.py). The new pipeline takes `pipe`'s config; anything swapped on the
txt2img pipeline per call (the scheduler, a VAE from VAES_DIR) is copied over before each call.
"""

from __future__ import annotations

from typing import Any

from backend.model.catalogue import Family
from backend.model.errors import ImageTaskError

IMG2IMG, INPAINT = "img2img", "inpaint"
# Families whose diffusers img2img/inpaint pipelines this server drives.
TASK_FAMILIES = {
    IMG2IMG: (Family.SD, Family.SDXL, Family.SD3, Family.FLUX),
    INPAINT: (Family.SD, Family.SDXL, Family.SD3, Family.FLUX),
}
# What the response says about how a mask was painted (`RawOutput.notes["inpaint_mode"]`).
DEDICATED = "dedicated inpainting UNet"
BLENDED = "mask blending on the base model"
# Components a call may swap on the txt2img pipeline, which the task pipeline must then use.
_SWAPPED = ("scheduler", "vae")


def task_pipeline(model: Any, task: str) -> Any:
    """`model`'s pipeline for `task` (txt2img, img2img, inpaint), built once and cached on it."""
    if task == "txt2img":
        return model.pipeline
    pipeline = model.tasks.get(task)
    if pipeline is None:
        if model.family not in TASK_FAMILIES[task]:
            raise ImageTaskError(
                f"{model.family.value} models cannot do {task} here; use an SD, SDXL, SD3 or "
                "FLUX model."
            )
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        auto = AutoPipelineForImage2Image if task == IMG2IMG else AutoPipelineForInpainting
        pipeline = auto.from_pipe(model.pipeline)
        pipeline.set_progress_bar_config(disable=True)
        model.tasks[task] = pipeline
    for name in _SWAPPED:
        # The txt2img pipeline is the one the residency and assets swap components on.
        setattr(pipeline, name, getattr(model.pipeline, name))
    return pipeline


def is_inpainting_model(pipeline: Any) -> bool:
    """Whether the denoiser is a dedicated inpainting one: latents + mask + masked image in."""
    denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
    config = getattr(denoiser, "config", None)
    channels = getattr(config, "in_channels", None)
    latent = getattr(getattr(pipeline.vae, "config", None), "latent_channels", 4)
    # SD/SDXL inpainting UNets take 4 + 1 + 4 = 9 channels.
    return (
        channels is not None
        and getattr(pipeline, "unet", None) is not None
        and (channels == 2 * latent + 1)
    )


def inpaint_mode(pipeline: Any) -> str:
    """How `pipeline` paints a mask: DEDICATED or BLENDED."""
    return DEDICATED if is_inpainting_model(pipeline) else BLENDED


def size_arguments(pipeline: Any, width: int, height: int) -> dict[str, int]:
    """The output size for an img2img call: SD3's and FLUX's take it (else they draw at their
    default size), SD's and SDXL's take it from the image."""
    import inspect

    if "width" in inspect.signature(pipeline.__call__).parameters:
        return {"width": width, "height": height}
    return {}
