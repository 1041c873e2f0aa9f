"""The OpenAPI entries of the event streams: GET /jobs/{job_id}/events, and the Server-Sent
Events answer of POST /v1/images/generations with `stream: true`."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from backend.view.job_events import MEDIA_TYPE

_STREAM_503 = (
    "Too many event streams open (SSE_MAX_LISTENERS in all, SSE_MAX_PER_JOB on this job): "
    "see Retry-After, or poll GET /jobs/{job_id}"
)
_EVENTS = (
    "Server-Sent Events, each `id: <ordered id>`, `event: <name>`, `data: <one-line JSON>`: "
    "`queued` (the job, as GET /jobs/{job_id} shows it; again when its queue position moves), "
    "`started` (the job), `progress` (the job, when its step moves), `preview` ({step, "
    "total_steps, width, height, image: a data: URL}, when the job asked for preview_every), "
    "then one final event that ends the stream: `succeeded` (the job: its `images` are the URLs), "
    "`failed` ({error, details, job}) or `cancelled` (the job). `: ping` comments are heartbeats "
    "(SSE_HEARTBEAT_SECONDS); the stream also ends after SSE_MAX_SECONDS, and a client reconnects "
    "with Last-Event-ID to get only newer events."
)
OPENAI_EVENTS = (
    "With `stream: true`: Server-Sent Events, `image_generation.partial_image` (up to "
    "`partial_images` live previews, PNG) then one `image_generation.completed` per image; a "
    "failure after the stream began is an `error` event in OpenAI's error shape."
)


# One event as a client parses it (each field a line of the stream).
_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Ordered: resume with Last-Event-ID"},
        "event": {"type": "string", "description": "The event's name"},
        "data": {"type": "string", "description": "JSON, on one line"},
        "retry": {"type": "integer", "description": "Milliseconds before reconnecting"},
    },
}


def event_stream_content() -> dict[str, Any]:
    """The response content of a Server-Sent Events answer: its events' fields."""
    return {MEDIA_TYPE: {"schema": _EVENT}}


def add_event_paths(spec: APISpec, errors: dict[str, Any]) -> None:
    """Add GET /jobs/{job_id}/events to `spec`; `errors`: its error responses by status."""
    parameters = [
        {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "The id of the last event received: only newer ones are sent.",
            "schema": {"type": "string"},
        },
        {
            "name": "last_event_id",
            "in": "query",
            "required": False,
            "description": "The same, for clients that cannot set headers.",
            "schema": {"type": "string"},
        },
    ]
    responses = {"200": {"description": _EVENTS, "content": event_stream_content()}, **errors}
    responses["503"] = {**responses["503"], "description": _STREAM_503}
    operation = {
        "summary": "A job's progress, pushed as Server-Sent Events until it ends",
        "tags": ["jobs"],
        "parameters": parameters,
        "responses": responses,
    }
    spec.path(path="/jobs/{job_id}/events", operations={"get": operation})
