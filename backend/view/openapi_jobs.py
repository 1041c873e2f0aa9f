"""The OpenAPI entries of the jobs API: submit, poll, cancel, fetch images."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from backend.view.jobs import JobSchema
from backend.view.openapi_parts import RESULT_HEADERS, errors, json_body, operation, post


def add_job_paths(spec: APISpec, image_content: dict[str, Any]) -> dict[str, Any]:
    """Add /jobs and its job, image and cancel paths; returns the submit responses."""
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    job = {"description": "The job", **json_body(JobSchema)}
    submit = post(
        "Queue a generation; fetch it later",
        "GenerateRequest",
        {
            "202": {
                **job,
                "description": "Accepted",
                "headers": {
                    "Location": {"description": "The job's URL", "schema": {"type": "string"}}
                },
            },
            **errors(400, 401, 404, 413, 415, 429, 503),
        },
        "jobs",
    )
    spec.path(path="/jobs", operations=submit)
    spec.path(
        path="/jobs/{job_id}",
        operations={
            "get": operation(
                "A job's status, progress, queue position, timing and error",
                "jobs",
                {"200": job, **errors(401, 404, 410)},
                [job_id],
            ),
            "delete": operation(
                "Cancel a queued or running job; delete a finished one",
                "jobs",
                {"200": job, **errors(401, 404, 410)},
                [job_id],
            ),
        },
    )
    image = {
        "description": "The image",
        "headers": RESULT_HEADERS,
        "content": {k: v for k, v in image_content.items() if k.startswith("image/")},
    }
    index = {"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}}
    for path, parameters, summary in (
        ("/jobs/{job_id}/image", [job_id], "The first image of a job that succeeded"),
        ("/jobs/{job_id}/images/{index}", [job_id, index], "Image `index` (from 0) of a job"),
    ):
        responses = {"200": image, **errors(401, 404, 409, 410)}
        spec.path(path=path, operations={"get": operation(summary, "jobs", responses, parameters)})
    return submit["post"]["responses"]
