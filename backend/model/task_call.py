"""What one pipeline call draws, by task: txt2img, img2img, inpaint, hires fix, refiner.

`pipeline_call.py` prepares what every task shares (scheduler, LoRAs, text embeddings, seeds);
this module picks the pipeline(s) and their image arguments, one pass or two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.model import image_tasks, latent_blend, task_pipelines
from backend.model.errors import ImageTaskError
from backend.model.family_call import callback_arguments
from backend.model.step_progress import Progress
from backend.model.task_steps import strength_steps
from backend.model.types import GenerationRequest


@dataclass
class TaskCall:
    """Everything a call's passes share."""

    model: Any  # pipeline_call.LoadedModel
    requests: Sequence[GenerationRequest]
    texts: dict[str, Any]  # the text arguments (prompts or embeddings), one per output image
    per_prompt: int  # num_images_per_prompt
    generators: Callable[[], list[Any]]  # fresh per-image generators, seeded alike each time
    progress: Progress
    refiner: Callable[[str], Any] | None = None  # the refiner pipeline by name (refiner.py)
    notes: dict[str, Any] = field(default_factory=dict)  # what the response reports

    @property
    def request(self) -> GenerationRequest:
        """The first request: batch_key makes the rest alike in everything a pass reads."""
        return self.requests[0]

    def run(
        self,
        pipeline: Any,
        planned: int,
        later: int = 0,
        *,
        texts: dict[str, Any] | None = None,
        per_prompt: int | None = None,
        on_latents: Any = None,
        **arguments: Any,
    ) -> Any:
        """One pass of `pipeline`: the shared arguments, progress, and `arguments`."""
        request = self.request
        callback = self.progress.callback(planned, later, on_latents)
        if on_latents is not None:
            arguments["callback_on_step_end_tensor_inputs"] = ["latents"]
        output = pipeline(
            **(self.texts if texts is None else texts),
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=self.per_prompt if per_prompt is None else per_prompt,
            generator=self.generators(),
            **callback_arguments(pipeline, callback),
            **arguments,
        )
        self.progress.passed(pipeline, planned)
        return output.images


def draw(call: TaskCall) -> list[Any]:
    """The call's images (PIL), one per output image in order; `call.notes` says how."""
    request = call.request
    if request.refiner is not None:
        from backend.model.refiner import refine

        return refine(call)
    if request.task == "txt2img":
        check_txt2img(call.model)
        if request.hires is not None:
            from backend.model.hires import hires_fix

            return hires_fix(call)
        steps = request.steps
        pipeline = call.model.pipeline
        return call.run(
            pipeline, steps, width=request.width, height=request.height,
            num_inference_steps=steps, output_type="pil",
        )  # fmt: skip
    return image_to_image(call)


def check_txt2img(model: Any) -> None:
    """A dedicated inpainting model draws only inside a mask: say so instead of crashing."""
    if task_pipelines.is_inpainting_model(model.pipeline):
        raise ImageTaskError(
            "This is an inpainting model: it needs an image and a mask (use the image edit "
            "endpoint with a mask), not a text-only request."
        )


def image_to_image(call: TaskCall) -> list[Any]:
    """img2img or inpaint from each request's input images (and mask)."""
    request = call.request
    given = request.init_image
    assert given is not None
    task = request.task
    run = strength_steps(request.steps, given.strength)
    call.notes["steps_run"] = run
    pipeline = task_pipelines.task_pipeline(call.model, task)
    if task == task_pipelines.INPAINT:
        call.notes["inpaint_mode"] = task_pipelines.inpaint_mode(pipeline)
    elif task_pipelines.is_inpainting_model(pipeline):
        raise ImageTaskError(
            "This is an inpainting model: img2img needs a model that is not (send a mask to "
            "inpaint with it)."
        )
    if run == 0:
        # diffusers refuses a pass of no steps: strength this low keeps the input as it is.
        return image_tasks.unchanged(call.requests)
    arguments: dict[str, Any] = {
        "image": image_tasks.inputs(call.requests),
        "strength": given.strength,
        "num_inference_steps": request.steps,
        "output_type": "pil",
        **task_pipelines.size_arguments(pipeline, request.width, request.height),
    }
    # Strength 1 starts from pure noise, as diffusers' inpaint pipeline does: img2img's own
    # start (the input noised to the first step) would still show the input faintly.
    from_noise = given.strength >= 1
    noise = {
        "width": request.width, "height": request.height,
        "num_inference_steps": request.steps, "output_type": "pil",
    }  # fmt: skip
    if task == task_pipelines.IMG2IMG:
        if from_noise:
            return call.run(call.model.pipeline, run, **noise)
        return call.run(pipeline, run, **arguments)
    originals = image_tasks.originals(call.requests)
    masks = image_tasks.masks(call.requests)
    box = None
    if given.full_res:
        # A1111's "inpaint only masked": the mask's box (plus padding, widened to the request's
        # aspect) drawn at the request's size, then scaled back and pasted through the mask.
        box = image_tasks.crop_box(masks[0], request.width, request.height, given.full_res_padding)
        size = (request.width, request.height)
        arguments["image"] = image_tasks.crop(arguments["image"], box, size)
        masks = image_tasks.crop(masks, box, size)
    if latent_blend.needs_blending(pipeline):
        # diffusers' inpaint pipeline refuses this UNet: blend through the img2img one.
        pipeline = task_pipelines.task_pipeline(call.model, task_pipelines.IMG2IMG)
        seeds = [seed for each in call.requests for seed in each.seeds()]
        hook = latent_blend.blender(pipeline, arguments["image"], masks, seeds)
        arguments.pop("width", None), arguments.pop("height", None)  # SD's img2img takes none
        if from_noise:
            pipeline, arguments = call.model.pipeline, noise
        drawn = call.run(pipeline, run, on_latents=hook, **arguments)
    else:
        arguments.update(mask_image=masks, width=request.width, height=request.height)
        drawn = call.run(pipeline, run, **arguments)
    if box is not None:
        drawn = image_tasks.paste(drawn, originals, box)
    full_masks = image_tasks.masks(call.requests)
    return [
        image_tasks.overlay(image, original, mask)
        for image, original, mask in zip(drawn, originals, full_masks, strict=True)
    ]
