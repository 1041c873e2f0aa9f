"""A job's life as a sequence of events, for Server-Sent Events streams (no Flask, no torch).

The events are derived from the job's state, read from the service every `poll_seconds`: in
either queue mode, `service.job` and `service.job_preview` are all a stream needs. Each event
has an id that orders it among every event the job can ever produce, so a client reconnecting
with the last id it saw gets only what is newer (a resumed stream skips nothing it missed that
the job's state still shows; intermediate queue positions and steps are not replayed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from backend.model.errors import JobGoneError, JobNotFoundError
from backend.model.job_record import JobPreview, JobRecord, JobStatus
from backend.model.service import GenerationService

POLL_SECONDS = 0.2  # how often a stream reads the job's state: what a progress bar needs

# An event id is round * ROUND + offset, the round being the job's `attempt` (runs begun, or in
# the scale-out mode claims made: a claimed job is still queued until its run begins). Within a
# round: queue positions count down to QUEUE_SPAN, then started, then two ids per step
# (progress, then that step's preview); the final event comes after every id of its round. A
# run cut off by a crash is followed by a higher round's events (its queue wait in between,
# lower than the cut-off run's steps, is not told to a client that saw them).
ROUND = 10_000_000
QUEUE_SPAN = 1_000_000
STARTED = QUEUE_SPAN
FINAL = ROUND - 1
_EVENT_ID = re.compile(r"[0-9]{1,18}")


class EventName(StrEnum):
    """The events of a job's stream; the last three are final and end it."""

    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    PREVIEW = "preview"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_FINAL_EVENTS = {
    JobStatus.SUCCEEDED: EventName.SUCCEEDED,
    JobStatus.FAILED: EventName.FAILED,
    JobStatus.CANCELLED: EventName.CANCELLED,
}


@dataclass(frozen=True)
class JobEvent:
    """One event: its ordering id, its name, the job as it was, and the preview of `preview`."""

    id: int
    name: EventName
    job: JobRecord
    preview: JobPreview | None = None

    @property
    def final(self) -> bool:
        """The stream ends with this event."""
        return self.name in _FINAL_EVENTS.values()


@dataclass(frozen=True)
class StreamTiming:
    """How long a stream lasts and how often it speaks when nothing happens."""

    heartbeat_seconds: float
    max_seconds: float | None  # None: until the job ends
    poll_seconds: float = POLL_SECONDS


def _queued_id(job: JobRecord) -> int:
    position = min(job.queue_position or 0, QUEUE_SPAN - 1)
    return job.attempt * ROUND + (QUEUE_SPAN - 1 - position)


def _run_round(job: JobRecord) -> int:
    # A run counts itself once begun; where a mode reports a running job before that, it is
    # still the run its queue wait led to (round 1 at least).
    return max(job.attempt, 1)


def _step_id(job: JobRecord, step: int, preview: bool = False) -> int:
    return _run_round(job) * ROUND + STARTED + 1 + 2 * step + int(preview)


def _final_id(job: JobRecord) -> int:
    return (job.attempt + 1) * ROUND + FINAL  # after every id of the run it ends


def state_events(job: JobRecord) -> list[JobEvent]:
    """The events `job`'s state shows now (without its preview), in id order."""
    if job.status is JobStatus.QUEUED:
        return [JobEvent(_queued_id(job), EventName.QUEUED, job)]
    if job.status is JobStatus.RUNNING:
        events = [JobEvent(_run_round(job) * ROUND + STARTED, EventName.STARTED, job)]
        if job.step > 0:
            events.append(JobEvent(_step_id(job, job.step), EventName.PROGRESS, job))
        return events
    return [JobEvent(_final_id(job), _FINAL_EVENTS[job.status], job)]


def parse_event_id(value: str | None) -> int | None:
    """The id a client last saw (its Last-Event-ID), or None when absent or not one of ours."""
    match = _EVENT_ID.fullmatch(value.strip()) if value is not None else None
    return int(match[0]) if match else None


def follow_job(
    service: GenerationService,
    job_id: str,
    owner: str | None,
    timing: StreamTiming,
    *,
    after: int | None = None,
    disconnected: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[JobEvent | None]:
    """The events of a job newer than id `after`, as they happen, until a final one, the
    stream's lifetime or the client's departure; None when a heartbeat is due.

    A job that disappears (deleted, expired) ends the stream without an event: a client that
    reconnects is told 404 or 410.
    """
    started = last_spoke = time.monotonic()
    last = -1 if after is None else after
    while True:
        try:
            job = service.job(job_id, owner)
        except (JobNotFoundError, JobGoneError):
            return
        events = [event for event in state_events(job) if event.id > last]
        preview = _preview_event(service, job, owner, last)
        if preview is not None:
            events = sorted([*events, preview], key=lambda event: event.id)
        for event in events:
            yield event
            last = event.id
        if job.status.final:  # told now, or before the client reconnected
            return
        now = time.monotonic()
        if events:
            last_spoke = now
        elif now - last_spoke >= timing.heartbeat_seconds:
            yield None
            last_spoke = now
        if timing.max_seconds is not None and now - started >= timing.max_seconds:
            return
        if disconnected():
            return
        sleep(timing.poll_seconds)


def _preview_event(
    service: GenerationService, job: JobRecord, owner: str | None, last: int
) -> JobEvent | None:
    """The job's latest preview, when it is newer than `last` (fetched only then)."""
    if job.status is not JobStatus.RUNNING or job.preview_step is None:
        return None
    if _step_id(job, job.preview_step, preview=True) <= last:
        return None
    try:
        preview = service.job_preview(job.id, owner)
    except (JobNotFoundError, JobGoneError):
        return None
    if preview is None:
        return None
    event_id = _step_id(job, preview.step, preview=True)
    return JobEvent(event_id, EventName.PREVIEW, job, preview) if event_id > last else None
