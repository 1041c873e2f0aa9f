"""One call of a loaded diffusers pipeline: its arguments, its step-end callback, its images.

torch is imported inside the call, so importing this module stays instant.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.config import MemorySettings
from backend.model import prompt_plan, schedulers
from backend.model.catalogue import Family
from backend.model.family_call import set_vae_tiling
from backend.model.latent_preview import Previewer
from backend.model.lora_adapters import LoraAdapters
from backend.model.prompt_cache import PromptCache, no_negative, uses_guidance
from backend.model.refiner import refiner_pipeline
from backend.model.run_control import RunControl
from backend.model.step_progress import Progress, StepHook
from backend.model.task_call import TaskCall, draw
from backend.model.types import GenerationRequest

if TYPE_CHECKING:
    from backend.model.schedulers import SchedulerChoice


@dataclass(frozen=True)
class RawOutput:
    """What the pipeline drew for one request: PIL images, and the scheduler that drew them."""

    images: list[Any]
    scheduler: SchedulerChoice
    # How it was drawn, as plain data for the response: "task", "steps_run" (img2img, inpaint,
    # hires fix: the denoising steps that really ran), "inpaint_mode" (task_pipelines).
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A pipeline ready on its device, with what each call needs besides the pipeline."""

    pipeline: Any
    family: Family
    base_scheduler: Any  # the model's own scheduler, kept pristine as the template for each run
    prompts: PromptCache | None  # None: PROMPT_CACHE_SIZE=0, the pipeline encodes every prompt
    loras: LoraAdapters | None = None  # None: this pipeline takes no LoRA
    last_used: float = field(default_factory=time.monotonic)  # the residency's LRU clock
    assets: Any = None  # embeddings and VAEs it took on (model_assets.ModelAssets)
    # img2img/inpaint pipelines on the same modules, and refiners (task_pipelines, refiner.py)
    tasks: dict[str, Any] = field(default_factory=dict)


def call_pipeline(
    model: LoadedModel,
    requests: Sequence[GenerationRequest],
    controls: Sequence[RunControl],
    memory: MemorySettings,
    on_step: StepHook,
    *,
    models_dir: Path | None = None,  # where refiners are found; None: no refiner
    vaes_dir: Path | None = None,  # where previews look for the family's tiny VAE first
) -> list[RawOutput]:
    """One pipeline call for `requests` (compatible by `batch_key`); one output each."""
    import torch

    groups = _length_groups(model, requests)
    if len(groups) > 1:
        # Texts of different lengths would be padded to the longest, which changes the shorter
        # ones' images: each length gets its own call, so batching never changes an image.
        done: dict[int, RawOutput] = {}
        for indices in groups:
            outputs = call_pipeline(
                model, [requests[i] for i in indices], [controls[i] for i in indices], memory,
                on_step, models_dir=models_dir, vaes_dir=vaes_dir,
            )  # fmt: skip
            done.update(zip(indices, outputs, strict=True))
        return [done[index] for index in range(len(requests))]
    request = requests[0]
    choice = None
    if request.scheduler is not None:
        choice = schedulers.find(request.scheduler, model.family)
        if choice is None:  # the schemas check this first; reaching here is a bug
            raise ValueError(f"scheduler {request.scheduler!r} does not fit a {model.family}")
    pipeline = model.pipeline
    pipeline.scheduler = schedulers.build(choice, model.base_scheduler)
    width, height = request.output_size
    tile = memory.vae_tiling == "true" or (
        memory.vae_tiling == "auto" and width * height > memory.vae_tiling_pixels
    )
    # Decoding a large image in tiles bounds its memory; small ones decode faster whole.
    set_vae_tiling(pipeline.vae, tile)

    def generators() -> list[Any]:
        # One CPU generator per image: image k of a request starts from the same noise as a
        # request for seed+k alone, on any device, batched with other requests or not.
        return [
            torch.Generator("cpu").manual_seed(seed) for each in requests for seed in each.seeds()
        ]

    # batch_key: every request of the call names the same LoRA set.
    lora_key = model.loras.apply(request.loras) if model.loras is not None else ()
    refiner = None
    if models_dir is not None:
        refiner = partial(refiner_pipeline, model, models_dir=models_dir)
    with torch.inference_mode():
        texts, per_prompt = _text_arguments(model, requests, lora_key)
        previewer = None
        if any(each.preview_every > 0 for each in requests):
            previewer = Previewer(model.family.value, (vaes_dir, models_dir))
        progress = Progress(controls, on_step, requests, previewer)
        call = TaskCall(model, requests, texts, per_prompt, generators, progress, refiner)
        images = draw(call)
    if progress.cut_short:  # the denoising steps that really ran, of every pass
        call.notes.update(interrupted=True, steps_run=progress.reached)
        if progress.skipped:
            call.notes["skipped"] = True
    if choice is None:
        base = model.base_scheduler
        choice = schedulers.describe(type(base).__name__, base.config, model.family)
    notes = {"task": request.task, **call.notes}
    outputs = []
    for each in requests:
        outputs.append(RawOutput(images[: each.num_images], choice, notes))
        images = images[each.num_images :]
    return outputs


def _length_groups(model: LoadedModel, requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of `requests` grouped by the text length (chunks, T5 window) they encode at
    (and each full-res inpainting alone)."""
    if len(requests) == 1:
        return [[0]]
    groups: dict[tuple, list[int]] = {}
    for index, each in enumerate(requests):
        if each.init_image is not None and each.init_image.full_res:
            # diffusers pastes a cropped inpainting onto one original: one request per call.
            groups[("alone", index)] = [index]
            continue
        text = prompt_plan.plan(
            model.pipeline, model.family, each.prompt, each.negative_prompt or None
        )
        groups.setdefault(tuple(text.shape()), []).append(index)
    return list(groups.values())


def _text_arguments(
    model: LoadedModel, requests: Sequence[GenerationRequest], lora_key: tuple = ()
) -> tuple[dict[str, Any], int]:
    """The pipeline's text arguments for `requests`, and its num_images_per_prompt."""
    request = requests[0]
    # Emphasis, BREAK, prompts longer than the window and clip skip need embeddings made here
    # (batch_key: all of a batch has the same clip skip, and a negative prompt or none).
    plans = {
        (each.prompt, each.negative_prompt): prompt_plan.plan(
            model.pipeline, model.family, each.prompt, each.negative_prompt or None
        )
        for each in requests
    }
    plain = all(each.plain(model.family, request.clip_skip) for each in plans.values())
    if plain and len(requests) == 1 and model.prompts is None:
        # Exactly the call a lone request always made: MAX_BATCH_SIZE=1 changes nothing.
        # None, not "", so each family uses its own unconditional embedding (SDXL zeroes
        # it for an empty negative prompt); PixArt-Σ and Sana take "" (`no_negative`).
        negative = request.negative_prompt or no_negative(model.family)
        texts = {"prompt": request.prompt, "negative_prompt": negative}
        return texts, request.num_images
    # One entry per image, in the order the images come out.
    per_image = [each for each in requests for _ in range(each.num_images)]
    if plain and model.prompts is None:
        prompts = [each.prompt for each in per_image]
        negatives = (
            [each.negative_prompt for each in per_image] if request.negative_prompt else None
        )
        return {"prompt": prompts, "negative_prompt": negatives or no_negative(model.family)}, 1
    # The embeddings the call would compute itself, from the cache where seen before; per
    # image already (SD3 would not repeat given embeddings for num_images_per_prompt).
    guidance = uses_guidance(model.pipeline, request.guidance_scale)
    cache = model.prompts if model.prompts is not None else PromptCache(0)
    texts = [plans[(each.prompt, each.negative_prompt)] for each in per_image]
    # A LoRA on a text encoder changes the embeddings: they are cached under its set.
    embeddings = cache.embeddings(
        model.pipeline, model.family, texts, guidance, request.clip_skip, variant=lora_key
    )
    return embeddings, 1
