"""AUTOMATIC1111's answer to txt2img and img2img: images, the parameters echoed, `info` as JSON."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from marshmallow import Schema, fields

from backend.model.images import infotext
from backend.model.types import GenerationRequest, GenerationResult
from backend.view.a1111_common import A1111Command
from backend.view.generate import b64


class A1111ImagesResponseSchema(Schema):
    """The answer of `POST /sdapi/v1/txt2img` and `/sdapi/v1/img2img`."""

    images = fields.List(fields.String(), required=True, metadata={"description": "Base64 PNGs."})
    parameters = fields.Dict(
        required=True, metadata={"description": "The request, with defaults filled in."}
    )
    info = fields.String(
        required=True, metadata={"description": "JSON text: seeds, sampler, infotexts..."}
    )


def _infotext(request: GenerationRequest, seed: int, result: GenerationResult, extra: dict) -> str:
    """The model layer's infotext, with A1111's extra entries it does not already hold."""
    text = infotext(request, seed, result.sampler, result.model)
    added = [f"{key}: {value:g}" if isinstance(value, float) else f"{key}: {value}"
             for key, value in extra.items() if f"{key}: " not in text]  # fmt: skip
    return ", ".join([text, *added]) if added else text


def dump_images(command: A1111Command, results: list[GenerationResult]) -> dict[str, Any]:
    """AUTOMATIC1111's response for the `n_iter` results of `command`."""
    first = results[0]
    request = replace(first.request, seed=first.seed)
    seeds = [seed for result in results for seed in result.seeds]
    count = len(seeds)
    strength = command.extra.get("Denoising strength")
    info: dict[str, Any] = {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        # The drawn size: with the hires fix, the first pass's (the images are larger), as A1111.
        "width": request.width,
        "height": request.height,
        "sampler_name": first.sampler,
        "cfg_scale": request.guidance_scale,
        "steps": request.steps,
        "batch_size": request.num_images,
        "restore_faces": False,
        "sd_model_name": first.model,
        "sd_model_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": strength,
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": request.clip_skip or 1,
        "index_of_first_image": 0,
        "infotexts": [_infotext(request, seed, first, command.extra) for seed in seeds],
        "extra_generation_params": command.extra,
    }
    # How the model layer drew it: the steps that ran, how it inpainted (a dedicated
    # inpainting UNet or mask blending on the base model), and whether it was interrupted.
    for key in ("steps_run", "inpaint_mode", "interrupted"):
        if key in first.notes:
            info[key] = first.notes[key]
    images = [b64(image.data) for result in results for image in result.images]
    return A1111ImagesResponseSchema().dump(
        {
            "images": images if command.send_images else [],
            "parameters": command.parameters,
            "info": json.dumps(info),
        }
    )
