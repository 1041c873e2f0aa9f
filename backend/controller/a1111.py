"""AUTOMATIC1111-compatible endpoints, for its clients (webuiapi, plugins, scripts)."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine, request_owner
from backend.controller.request_body import load_generation
from backend.model import schedulers
from backend.model.types import MAX_SEED
from backend.view.a1111 import (
    OptionsSchema,
    ScriptsSchema,
    Txt2ImgRequestSchema,
    dump_samplers,
    dump_schedule_types,
    dump_sd_models,
)
from backend.view.a1111_common import A1111Command
from backend.view.a1111_img2img import Img2ImgRequestSchema
from backend.view.a1111_info import dump_images

blueprint = Blueprint("a1111", __name__, url_prefix="/sdapi/v1")


def _run(command: A1111Command) -> Response:
    """`n_iter` pipeline calls of `batch_size` images, seeds consecutive across all of them."""
    engine = get_engine()
    every = engine.settings.serving.a1111_preview_every
    if every:  # A1111_PREVIEW_EVERY: its clients watch /sdapi/v1/progress, they cannot ask
        request = replace(command.request, preview_every=min(every, command.request.steps))
        command = replace(command, request=request)
    results = [engine.generate(command.request, owner=request_owner())]
    for _ in range(command.n_iter - 1):
        notes = results[-1].notes
        if notes.get("interrupted") and not notes.get("skipped"):
            break  # A1111's interrupt ends the request; its skip goes on with the next batch
        # The first call drew the seed if none was given; the next batches continue from it.
        follow_on = replace(command.request, seed=(results[-1].seeds[-1] + 1) % (MAX_SEED + 1))
        results.append(engine.generate(follow_on, owner=request_owner()))
    return jsonify(dump_images(command, results))


@blueprint.post("/txt2img")
def txt2img() -> Response:
    """Images from a prompt (and the hires fix, when asked)."""
    return _run(load_generation(Txt2ImgRequestSchema))


@blueprint.post("/img2img")
def img2img() -> Response:
    """Images from init images and a prompt; inpainting when a mask is given."""
    return _run(load_generation(Img2ImgRequestSchema))


@blueprint.get("/sd-models")
def sd_models() -> Response:
    """The checkpoints (model folders) present."""
    return jsonify(dump_sd_models(get_engine().models()))


@blueprint.get("/samplers")
def samplers() -> Response:
    """The samplers the default model can use."""
    return jsonify(dump_samplers(schedulers.choices(get_engine().catalog.default.family)))


@blueprint.get("/schedulers")
def schedule_types() -> Response:
    """The schedule types (`automatic`, `karras`)."""
    return jsonify(dump_schedule_types())


@blueprint.get("/options")
def options() -> Response:
    """The current checkpoint, as clients read it."""
    return jsonify(OptionsSchema().dump({"sd_model_checkpoint": get_engine().catalog.default.name}))


@blueprint.get("/scripts")
def scripts() -> Response:
    """No scripts or extensions (clients probe this to find them)."""
    return jsonify(ScriptsSchema().dump({"txt2img": [], "img2img": []}))
