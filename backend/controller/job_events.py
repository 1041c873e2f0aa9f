"""GET /jobs/<id>/events: a job's progress as Server-Sent Events, until it ends."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, request

from backend.controller import get_engine, request_owner
from backend.controller.streams import client_gone, event_stream, take_listener
from backend.model.job_events import JobEvent, StreamTiming, follow_job, parse_event_id
from backend.view.job_events import HEARTBEAT, format_event, retry_hint

blueprint = Blueprint("job_events", __name__)


@blueprint.get("/jobs/<job_id:job_id>/events")
def events(job_id: str) -> Response:
    """The job's events (queued, started, progress, preview, then succeeded, failed or
    cancelled); with Last-Event-ID (header, or `last_event_id`), only the newer ones."""
    engine = get_engine()
    owner = request_owner()
    engine.job(job_id, owner)  # an unknown or gone job is a 404 or 410 before any stream
    last = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    settings = engine.settings.streams
    timing = StreamTiming(settings.heartbeat_seconds, settings.max_seconds)
    give_back = take_listener(job_id)
    stream = follow_job(
        engine,
        job_id,
        owner,
        timing,
        after=parse_event_id(last),
        disconnected=client_gone(request.environ),
    )
    return event_stream(_write(stream, engine.settings.serving.job_ttl_seconds), give_back)


def _write(stream: Iterator[JobEvent | None], ttl_seconds: float) -> Iterator[str]:
    yield retry_hint()
    for event in stream:
        yield HEARTBEAT if event is None else format_event(event, ttl_seconds)
