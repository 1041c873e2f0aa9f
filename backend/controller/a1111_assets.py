"""AUTOMATIC1111's embeddings and VAE listings, and the options call that switches the model."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine
from backend.controller.request_body import json_object
from backend.model import embedding_files, vae_files
from backend.view.a1111_assets import (
    SetOptionsSchema,
    dump_embeddings,
    dump_latent_upscale_modes,
    dump_upscalers,
    dump_vaes,
)
from backend.view.a1111_common import model_from_title

blueprint = Blueprint("a1111_assets", __name__, url_prefix="/sdapi/v1")


@blueprint.get("/embeddings")
def embeddings() -> Response:
    """The embeddings of EMBEDDINGS_DIR, by whether they fit the default model."""
    engine = get_engine()
    folder = engine.settings.assets.embeddings_dir
    return jsonify(dump_embeddings(embedding_files.listing(folder, engine.catalog.default)))


@blueprint.get("/sd-vae")
def sd_vae() -> Response:
    """The VAEs of VAES_DIR."""
    return jsonify(dump_vaes(vae_files.vae_files(get_engine().settings.assets.vaes_dir)))


@blueprint.get("/upscalers")
def upscalers() -> Response:
    """The hires fix's image upscalers (None, Lanczos, Nearest)."""
    return jsonify(dump_upscalers())


@blueprint.get("/latent-upscale-modes")
def latent_upscale_modes() -> Response:
    """The hires fix's latent upscale modes (Latent)."""
    return jsonify(dump_latent_upscale_modes())


@blueprint.post("/options")
def set_options() -> Response:
    """Switch the default model (`sd_model_checkpoint`); other options are ignored. An admin
    endpoint: with API keys set, only ADMIN_API_KEYS may call it (access.py)."""
    options = SetOptionsSchema().load(json_object())
    title = options.get("sd_model_checkpoint")
    if title:
        get_engine().switch_default(model_from_title(title))
    return jsonify(None)  # AUTOMATIC1111 answers null
