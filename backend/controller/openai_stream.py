"""`POST /v1/images/generations` with `stream: true`: the generation runs as a job, followed
until it ends, and told as OpenAI's image streaming events (partial images, then completed)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator

from flask import Response, request

from backend.controller import get_engine, request_owner
from backend.controller.errors import model_error_status
from backend.controller.streams import client_gone, event_stream, take_listener
from backend.model.errors import JobGoneError, JobNotFoundError, ModelLayerError
from backend.model.job_events import EventName, StreamTiming, follow_job
from backend.model.service import GenerationService
from backend.view.job_events import HEARTBEAT
from backend.view.openai import OpenAIImageCommand, openai_error_body
from backend.view.openai_stream import completed_event, error_event, partial_image_event


def stream_images(command: OpenAIImageCommand) -> Response:
    """Queue the generation as a job (with previews for the partial images) and stream it; the
    job is dropped when the stream closes: finished, or cancelled when the client left."""
    engine = get_engine()
    owner = request_owner()
    # OpenAI's clients cannot resume a stream: only the bound on all streams applies.
    give_back = take_listener(f"openai-{secrets.token_hex(8)}")
    try:
        job = engine.submit_job(command.request, command.output, owner)
    except BaseException:
        give_back()
        raise
    body = _write(engine, job.id, owner, command, client_gone(request.environ))

    def close() -> None:  # safe to call twice (see event_stream)
        give_back()
        # A finished job is deleted with its images, a running one cancelled.
        with contextlib.suppress(JobNotFoundError, JobGoneError):
            engine.cancel_job(job.id, owner)

    return event_stream(body, close)


def _write(
    engine: GenerationService,
    job_id: str,
    owner: str | None,
    command: OpenAIImageCommand,
    gone: Callable[[], bool],
) -> Iterator[str]:
    timing = StreamTiming(engine.settings.streams.heartbeat_seconds, max_seconds=None)
    request_ = command.request
    partials = 0
    for event in follow_job(engine, job_id, owner, timing, disconnected=gone):
        if event is None:
            yield HEARTBEAT
        elif event.name is EventName.PREVIEW and event.preview is not None:
            if partials < command.partial_images:
                yield partial_image_event(request_, event.preview, partials, command.quality)
                partials += 1
        elif event.name is EventName.SUCCEEDED:
            result = engine.job_result(job_id, owner)
            for image in result.images:
                yield completed_event(request_, image, command.output.format, command.quality)
        elif event.final:
            error = event.job.error or ModelLayerError("The generation was cancelled.")
            status = model_error_status(error) if event.job.error is not None else 500
            yield error_event(openai_error_body(status, str(error), None))
