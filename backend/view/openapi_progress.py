"""The OpenAPI entries of AUTOMATIC1111's progress, interrupt and skip."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from backend.view.a1111_progress import ProgressResponseSchema

_TAG = ["automatic1111"]


def add_progress_paths(spec: APISpec, errors: dict[str, Any]) -> None:
    """Add GET /sdapi/v1/progress and POST /sdapi/v1/interrupt and /skip to `spec`."""
    query = {
        "name": "skip_current_image",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": False},
        "description": "Leave current_image (the latest live preview) out.",
    }
    ok = {"description": "OK", "content": {"application/json": {"schema": ProgressResponseSchema}}}
    spec.path(
        path="/sdapi/v1/progress",
        operations={
            "get": {
                "summary": "The caller's current generation: steps, ETA, live preview",
                "tags": _TAG,
                "parameters": [query],
                "responses": {"200": ok, **errors},
            }
        },
    )
    empty = {"description": "Done", "content": {"application/json": {"schema": {"type": "object"}}}}
    for path, summary in (
        ("/sdapi/v1/interrupt", "Stop the caller's running generation; its images are kept"),
        ("/sdapi/v1/skip", "Stop the batch drawing now; later batches (n_iter) still run"),
    ):
        operation = {"summary": summary, "tags": _TAG, "responses": {"200": empty, **errors}}
        spec.path(path=path, operations={"post": operation})
