"""The OpenAPI entries of the routes that take images (`/image/edit`, `/jobs/edit`,
`/v1/images/edits`): a JSON body with base64 images, or a multipart form with files."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from backend.config import Limits
from backend.model.model_catalog import ModelCatalog
from backend.view.edit import EditRequestSchema
from backend.view.openai_edits import OpenAIEditRequestSchema

_IMAGE_TYPES = "image/png, image/jpeg, image/webp"
_UPLOAD_413 = "Body larger than MAX_UPLOAD_LENGTH, or a form of too many parts"
_UPLOAD_415 = "Content-Type is neither application/json nor multipart/form-data"


def _body(name: str, files: tuple[str, ...]) -> dict[str, Any]:
    """A request body of schema `name` as JSON (base64 images) or as a form (files)."""
    ref = {"$ref": f"#/components/schemas/{name}"}
    encoding = {field: {"contentType": _IMAGE_TYPES} for field in files}
    return {
        "required": True,
        "description": "JSON with base64 images (data: URL prefixes accepted), or a "
        "multipart form with the images as files and every other field as a form field "
        "(lists and objects as JSON text).",
        "content": {
            "application/json": {"schema": ref},
            "multipart/form-data": {"schema": ref, "encoding": encoding},
        },
    }


def add_image_paths(
    spec: APISpec,
    limits: Limits,
    catalog: ModelCatalog,
    responses: dict[str, dict[str, Any]],
) -> None:
    """Add the edit routes to `spec`. `responses`: by route kind ("generate", "job", "openai"),
    the responses the matching text-only route documents, reused with the upload limits."""
    context = {"limits": limits, "catalog": catalog}
    spec.components.schema("EditRequest", schema=EditRequestSchema(**context))
    spec.components.schema("OpenAIEditRequest", schema=OpenAIEditRequestSchema(**context))
    for path, summary, schema, kind, tag in (
        ("/image/edit", "Redraw an image; repaint the white of a mask", "EditRequest",
         "generate", "generate"),
        ("/jobs/edit", "Queue an edit (the body of /image/edit)", "EditRequest", "job", "jobs"),
        ("/v1/images/edits", "OpenAI-compatible image edits", "OpenAIEditRequest", "openai",
         "openai"),
    ):  # fmt: skip
        answers = {status: dict(answer) for status, answer in responses[kind].items()}
        for status, text in (("413", _UPLOAD_413), ("415", _UPLOAD_415)):
            if status in answers:
                answers[status]["description"] = text
        operation = {
            "summary": summary,
            "tags": [tag],
            "requestBody": _body(schema, ("image", "mask")),
            "responses": answers,
        }
        spec.path(path=path, operations={"post": operation})
