"""The OpenAPI entries of AUTOMATIC1111's img2img and the hires fix's upscaler listings."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from backend.view.a1111_assets import LatentUpscaleModeSchema, UpscalerSchema
from backend.view.a1111_img2img import Img2ImgRequestSchema
from backend.view.a1111_info import A1111ImagesResponseSchema

_TAG = ["automatic1111"]


def _json(schema: Any) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def add_img2img_paths(spec: APISpec, context: dict[str, Any], errors: dict[str, Any]) -> None:
    """Add POST /sdapi/v1/img2img (its request schema built with `context`: the limits and the
    catalog), answering `errors` too, and the upscaler listings, to `spec`."""
    spec.components.schema("Img2ImgRequest", schema=Img2ImgRequestSchema(**context))
    ok = {"description": "AUTOMATIC1111's img2img response", **_json(A1111ImagesResponseSchema)}
    operation = {
        "summary": "AUTOMATIC1111-compatible img2img and inpainting",
        "tags": _TAG,
        "requestBody": {"required": True, **_json("Img2ImgRequest")},
        "responses": {"200": ok, **errors},
    }
    spec.path(path="/sdapi/v1/img2img", operations={"post": operation})
    for path, summary, schema in (
        ("/sdapi/v1/upscalers", "Hires fix upscalers", UpscalerSchema(many=True)),
        ("/sdapi/v1/latent-upscale-modes", "Latent modes", LatentUpscaleModeSchema(many=True)),
    ):
        ok = {"200": {"description": "OK", **_json(schema)}}
        spec.path(
            path=path, operations={"get": {"summary": summary, "tags": _TAG, "responses": ok}}
        )
