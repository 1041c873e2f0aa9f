"""One call of a loaded diffusers pipeline: its arguments, its step-end callback, its images.

torch is imported inside the call, so importing this module stays instant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.config import MemorySettings
from backend.model import prompt_plan, schedulers
from backend.model.catalogue import Family
from backend.model.family_call import callback_arguments, set_vae_tiling
from backend.model.lora_adapters import LoraAdapters
from backend.model.prompt_cache import PromptCache, no_negative, uses_guidance
from backend.model.run_control import RunControl
from backend.model.types import GenerationRequest

if TYPE_CHECKING:
    from backend.model.schedulers import SchedulerChoice

StepHook = Callable[[int, int], None]  # (step just finished, total steps)


@dataclass(frozen=True)
class RawOutput:
    """What the pipeline drew for one request: PIL images, and the scheduler that drew them."""

    images: list[Any]
    scheduler: SchedulerChoice


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


def call_pipeline(
    model: LoadedModel,
    requests: Sequence[GenerationRequest],
    controls: Sequence[RunControl],
    memory: MemorySettings,
    on_step: StepHook,
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
                on_step,
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
    tile = memory.vae_tiling == "true" or (
        memory.vae_tiling == "auto" and request.width * request.height > memory.vae_tiling_pixels
    )
    # Decoding a large image in tiles bounds its memory; small ones decode faster whole.
    set_vae_tiling(pipeline.vae, tile)
    # One CPU generator per image: image k of a request starts from the same noise as a
    # request for seed+k alone, on any device, batched with other requests or not.
    generators = [
        torch.Generator("cpu").manual_seed(seed) for each in requests for seed in each.seeds()
    ]
    # batch_key: every request of the call names the same LoRA set.
    lora_key = model.loras.apply(request.loras) if model.loras is not None else ()
    with torch.inference_mode():
        texts, per_prompt = _text_arguments(model, requests, lora_key)
        output = pipeline(
            **texts,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=per_prompt,
            generator=generators,
            output_type="pil",
            **callback_arguments(pipeline, _step_end(controls, request.steps, on_step)),
        )
    if choice is None:
        base = model.base_scheduler
        choice = schedulers.describe(type(base).__name__, base.config, model.family)
    images = list(output.images)
    outputs = []
    for each in requests:
        outputs.append(RawOutput(images[: each.num_images], choice))
        images = images[each.num_images :]
    return outputs


def _length_groups(model: LoadedModel, requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of `requests` grouped by the text length (chunks, T5 window) they encode at."""
    if len(requests) == 1:
        return [[0]]
    groups: dict[tuple[int, int], list[int]] = {}
    for index, each in enumerate(requests):
        text = prompt_plan.plan(
            model.pipeline, model.family, each.prompt, each.negative_prompt or None
        )
        groups.setdefault(text.shape(), []).append(index)
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


def _step_end(controls: Sequence[RunControl], steps: int, on_step: StepHook) -> Callable[..., dict]:
    """diffusers' step-end callback: progress, the caller's hook, deadlines and cancellation."""

    def callback(pipeline: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
        total = getattr(pipeline, "num_timesteps", None) or steps
        on_step(step + 1, total)
        for control in controls:
            control.progress(step + 1, total)
        # Every request checked (each may end itself at its deadline), then: does anyone
        # still want these images? If not, diffusers skips the remaining steps.
        stops = [control.should_stop() for control in controls]
        if all(stops):
            pipeline._interrupt = True
        return kwargs

    return callback
