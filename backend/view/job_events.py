"""How a job's events are written on the wire: Server-Sent Events, one-line JSON data.

Each event is `id: <id>`, `event: <name>`, `data: <JSON>` and a blank line. The data of
queued, started, progress, succeeded and cancelled is the job as GET /jobs/<id> shows it;
preview's is the picture as a data: URL; failed's is the one error shape plus the job.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from backend.model.job_events import EventName, JobEvent
from backend.model.job_record import JobPreview
from backend.view.errors import error_body
from backend.view.jobs import dump_job

MEDIA_TYPE = "text/event-stream"
HEARTBEAT = ": ping\n\n"  # a comment: clients ignore it, proxies and dead sockets notice it
RETRY_MS = 2000  # how long a client waits before it reconnects after the stream ends


def sse(name: str, data: dict[str, Any], event_id: int | str | None = None) -> str:
    """One Server-Sent Event; `data` as JSON on one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def retry_hint(milliseconds: int = RETRY_MS) -> str:
    """The reconnection delay a client should use, sent first."""
    return f"retry: {milliseconds}\n\n"


def dump_preview(preview: JobPreview) -> dict[str, Any]:
    """A preview event's data: where the run is, and the picture as a data: URL."""
    encoded = base64.b64encode(preview.data).decode("ascii")
    return {
        "step": preview.step,
        "total_steps": preview.total_steps,
        "width": preview.width,
        "height": preview.height,
        "image": f"data:{preview.media_type};base64,{encoded}",
    }


def event_data(event: JobEvent, ttl_seconds: float) -> dict[str, Any]:
    """The JSON data of `event`."""
    if event.name is EventName.PREVIEW and event.preview is not None:
        return dump_preview(event.preview)
    job = dump_job(event.job, ttl_seconds)
    if event.name is EventName.FAILED:
        error = event.job.error
        message = str(error) if error is not None else "The job failed."
        details = {"code": error.code if error is not None else "model_error"}
        return {**error_body(message, details), "job": job}
    return job


def format_event(event: JobEvent, ttl_seconds: float) -> str:
    """`event` as Server-Sent Event text."""
    return sse(event.name.value, event_data(event, ttl_seconds), event.id)
