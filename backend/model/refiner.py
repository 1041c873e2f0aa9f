"""The SDXL refiner: loaded beside its base model, and the base + refiner ensemble call.

The base denoises until `switch_at` of the schedule and hands over its latents; the refiner
(an SDXL img2img pipeline with only the second text encoder) denoises the rest
(`denoising_end` / `denoising_start`). It is loaded on first use, on the base's device and dtype,
kept on the base's LoadedModel and unloaded with it. Its second text encoder and VAE are the
base's own modules when their configs match (as the official refiner's do): no second copy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from backend.model.catalogue import Family
from backend.model.errors import ImageTaskError, ModelUnavailableError
from backend.model.image_tasks import per_image
from backend.model.registry import REFINER_CLASS, is_refiner_folder

log = logging.getLogger(__name__)

_SHARED = ("text_encoder_2", "vae")


def refiner_pipeline(model: Any, name: str, models_dir: Path) -> Any:
    """The refiner `name` (a folder in MODELS_DIR) for `model`, loading it on first use."""
    refiners = model.tasks.setdefault("refiners", {})
    if name in refiners:
        return refiners[name]
    folder = models_dir / name
    if not is_refiner_folder(folder):
        raise ModelUnavailableError(
            f"The refiner '{name}' is not an SDXL refiner folder (model_index.json of a "
            f"{REFINER_CLASS}) in MODELS_DIR; check REFINER_MODEL."
        )
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from backend.model.loader import _LOADING

    base = model.pipeline
    shared = {
        component: getattr(base, component)
        for component in _SHARED
        if getattr(base, component, None) is not None and _same(folder / component, base, component)
    }
    try:
        with _LOADING:
            refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, dtype=base.dtype, **shared
            )
            refiner.to(base.device)
    except Exception as error:  # a missing or corrupt file, an incompatible component
        log.exception("loading the refiner %s failed", name)
        raise ModelUnavailableError(
            f"The refiner '{name}' failed to load ({type(error).__name__}); the server log has "
            "the details."
        ) from None
    refiner.set_progress_bar_config(disable=True)
    refiners[name] = refiner
    log.info("refiner %s loaded beside its base (shares %s)", name, ", ".join(shared) or "nothing")
    return refiner


def _same(folder: Path, base: Any, component: str) -> bool:
    """Whether the refiner's `component` has the base's architecture (then: the base's weights)."""
    try:
        theirs = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    config = getattr(base, component).config
    ours = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    keys = [key for key in theirs if not key.startswith("_") and key in ours]
    ignored = {"torch_dtype", "dtype", "transformers_version", "architectures"}
    return bool(keys) and all(theirs[key] == ours[key] for key in keys if key not in ignored)


def refine(call: Any) -> list[Any]:
    """The images of a txt2img call through the base + refiner ensemble (task_call.TaskCall)."""
    request = call.request
    if call.model.family is not Family.SDXL:
        raise ImageTaskError("The refiner works with SDXL models only.")
    if request.task != "txt2img" or request.hires is not None:
        raise ImageTaskError("The refiner runs on text-to-image requests without hires fix.")
    if call.refiner is None:
        raise ImageTaskError("No refiner is configured (REFINER_MODEL).")
    refiner = call.refiner(request.refiner.model)
    steps, switch = request.steps, request.refiner.switch_at
    later = steps - round(steps * switch)  # an estimate: the refiner's own count replaces it
    latents = call.run(
        call.model.pipeline, steps, later, width=request.width, height=request.height,
        num_inference_steps=steps, denoising_end=switch, output_type="latent",
    )  # fmt: skip
    if call.progress.stopped():
        if call.progress.cut_short:  # interrupted: the base pass's latents are the images
            from backend.model.hires import decode_latents

            return decode_latents(call.model.pipeline, latents)
        return [None] * len(latents)  # nobody wants these: dropped before anyone sees them
    base = call.model.pipeline.scheduler
    refiner.scheduler = type(base).from_config(base.config)  # the same sampler, its own state
    images = per_image(call.requests)
    # The refiner has its own (single) text encoder: it takes the prompts as text.
    texts = {
        "prompt": [each.prompt for each, _ in images],
        "negative_prompt": [each.negative_prompt for each, _ in images]
        if request.negative_prompt
        else None,
    }
    return call.run(
        refiner, later, texts=texts, per_prompt=1, image=latents,
        num_inference_steps=steps, denoising_start=switch, output_type="pil",
    )  # fmt: skip
