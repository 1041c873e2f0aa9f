"""Schemas of AUTOMATIC1111's embeddings, VAE and options-setting endpoints (`/sdapi/v1/...`)."""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields

from backend.model.embedding_files import EmbeddingFile, EmbeddingListing
from backend.model.vae_files import VaeFile


class EmbeddingSchema(Schema):
    """One embedding, as AUTOMATIC1111 describes it."""

    step = fields.Integer(allow_none=True, metadata={"description": "Training steps, if known."})
    sd_checkpoint = fields.String(allow_none=True, metadata={"description": "Trained on (hash)."})
    sd_checkpoint_name = fields.String(allow_none=True)
    shape = fields.Integer(allow_none=True, metadata={"description": "Vector width."})
    vectors = fields.Integer(metadata={"description": "Tokens' worth of vectors."})


class EmbeddingsSchema(Schema):
    """`GET /sdapi/v1/embeddings`: by name, those that fit the default model and the rest."""

    loaded = fields.Dict(keys=fields.String(), values=fields.Nested(EmbeddingSchema))
    skipped = fields.Dict(keys=fields.String(), values=fields.Nested(EmbeddingSchema))


class SdVaeSchema(Schema):
    """One VAE of VAES_DIR; `filename` is relative to it, as requests name it."""

    model_name = fields.String(required=True)
    filename = fields.String(required=True)


class SetOptionsSchema(Schema):
    """`POST /sdapi/v1/options`: `sd_model_checkpoint` switches the default model; other
    options are accepted and ignored (AUTOMATIC1111 clients send many)."""

    class Meta:
        unknown = INCLUDE

    sd_model_checkpoint = fields.String(
        allow_none=True, metadata={"description": "A checkpoint title or model name."}
    )


def _embedding(embedding: EmbeddingFile) -> dict[str, Any]:
    return {
        "step": embedding.step,
        "sd_checkpoint": embedding.sd_checkpoint,
        "sd_checkpoint_name": embedding.sd_checkpoint_name,
        "shape": embedding.widths[0] if embedding.widths else None,
        "vectors": embedding.vectors,
    }


def dump_embeddings(listing: EmbeddingListing) -> dict[str, Any]:
    """AUTOMATIC1111's embeddings answer: `loaded` fit the default model, `skipped` do not."""
    return EmbeddingsSchema().dump(
        {
            "loaded": {each.name: _embedding(each) for each in listing.fitting},
            "skipped": {each.name: _embedding(each) for each in listing.skipped},
        }
    )


def dump_vaes(vaes: list[VaeFile]) -> list[dict[str, Any]]:
    """AUTOMATIC1111's sd-vae answer (names only: never a server path)."""
    return SdVaeSchema(many=True).dump(
        [{"model_name": vae.model_name, "filename": vae.name} for vae in vaes]
    )


class UpscalerSchema(Schema):
    """An upscaler as AUTOMATIC1111 lists them (`GET /sdapi/v1/upscalers`)."""

    name = fields.String(required=True)
    model_name = fields.String(required=True, allow_none=True)
    model_path = fields.String(required=True, allow_none=True)
    model_url = fields.String(required=True, allow_none=True)
    scale = fields.Float(required=True)


class LatentUpscaleModeSchema(Schema):
    """A latent upscale mode (`GET /sdapi/v1/latent-upscale-modes`)."""

    name = fields.String(required=True)


# The hires fix's upscalers (types.HIRES_UPSCALERS). "None" resizes with Lanczos, as in A1111;
# the "Latent (...)" variants A1111 has are accepted, and drawn as "Latent".
UPSCALERS = ("None", "Lanczos", "Nearest")
LATENT_UPSCALE_MODES = ("Latent",)


def dump_upscalers() -> list[dict[str, Any]]:
    """The image-space upscalers the hires fix takes."""
    return UpscalerSchema(many=True).dump(
        [
            {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
            for name in UPSCALERS
        ]
    )


def dump_latent_upscale_modes() -> list[dict[str, Any]]:
    """The latent upscale modes the hires fix takes."""
    return LatentUpscaleModeSchema(many=True).dump([{"name": n} for n in LATENT_UPSCALE_MODES])
