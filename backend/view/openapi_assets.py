"""The OpenAPI entries of the embeddings, VAE and options-setting endpoints (a1111_assets)."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from marshmallow import Schema

from backend.view.a1111_assets import EmbeddingsSchema, SdVaeSchema, SetOptionsSchema
from backend.view.errors import ErrorSchema

_TAG = ["automatic1111"]


def _json(schema: Schema | type[Schema] | dict) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, **_json(ErrorSchema)}


def add_asset_paths(spec: APISpec) -> None:
    """Add /sdapi/v1/embeddings, /sdapi/v1/sd-vae and POST /sdapi/v1/options to `spec`."""
    for path, summary, schema in (
        ("/sdapi/v1/embeddings", "Textual-inversion embeddings", EmbeddingsSchema),
        ("/sdapi/v1/sd-vae", "VAEs", SdVaeSchema(many=True)),
    ):
        ok = {"200": {"description": "OK", **_json(schema)}}
        spec.path(
            path=path, operations={"get": {"summary": summary, "tags": _TAG, "responses": ok}}
        )
    spec.components.schema("SetOptions", schema=SetOptionsSchema)
    responses = {
        "200": {
            "description": "Done (null, as AUTOMATIC1111 answers)",
            **_json({"nullable": True}),
        },
        "400": _error("Invalid options"),
        "403": _error("An API key that is not an admin key (ADMIN_API_KEYS)"),
        "404": _error("Unknown model"),
        "415": _error("Content-Type is not application/json"),
        "503": _error("The model's folder cannot be loaded, or Redis does not answer (celery)"),
    }
    operation = {
        "summary": "Switch the default model (an admin endpoint when API keys are set)",
        "tags": _TAG,
        "requestBody": {"required": True, **_json("SetOptions")},
        "responses": responses,
    }
    spec.path(path="/sdapi/v1/options", operations={"post": operation})
