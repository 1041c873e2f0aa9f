"""One accepted generation in this process: its life from the queue to a result.

A `Job` is shared by three threads: the caller that submitted it (waiting, polling or
cancelling), the device worker that runs it, and the encoder that turns its images into files.
Every change of state goes through the job's lock, so a cancel racing the end of a run has
exactly one winner. A kept job's final state is made durable (`persist`) before anyone can see
it: a client told "succeeded" can rely on the images surviving a crash.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backend.model.catalogue import ModelSpec
from backend.model.errors import GenerationTimeoutError, ModelLayerError
from backend.model.job_record import JobPreview, JobRecord, JobStatus
from backend.model.task_steps import planned_steps
from backend.model.types import EncodedImage, GenerationRequest, GenerationResult, OutputOptions

if TYPE_CHECKING:
    from backend.model.pipeline_call import RawOutput


class Job:
    """One accepted generation, from submission to its result."""

    def __init__(
        self,
        spec: ModelSpec | None,  # None only for a job read back from disk (`restore`)
        request: GenerationRequest,
        output: OutputOptions,
        timeout: float | None,
        owner: str | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(16)  # 128 random bits: ids cannot be guessed
        self.owner = owner  # who may see it (an API key's identity); None: whoever has the id
        self.spec = spec
        self.request = request  # seed already drawn
        self.output = output
        self.timeout = timeout  # seconds from submission to the end of the run; None: no limit
        self.created_at = time.time()  # wall clock, for clients
        self.submitted = time.monotonic()
        self.deadline = self.submitted + timeout if timeout else None
        self.status = JobStatus.QUEUED
        self.step = 0
        self.total_steps = planned_steps(request)  # the step callback reports the real one
        self.started: float | None = None  # monotonic
        self.finished: float | None = None  # monotonic: images drawn, failed or cancelled
        self.finished_at: float | None = None  # wall clock of the final state, for the TTL
        self.batch_size = 1  # images in the pipeline call that served it
        self.error: ModelLayerError | None = None
        self.raw: RawOutput | None = None
        self.result: GenerationResult | None = None
        self.attempt = 0  # runs begun, across restarts (JOB_MAX_ATTEMPTS bounds it)
        self.on_drawn: Callable[[Job], None] | None = None  # called once the images exist
        self.on_begin: Callable[[Job], None] | None = None  # called once it starts a run
        self.on_progress: Callable[[Job], None] | None = None  # called after each step
        # Makes the final record (and images) durable; called before the final state is shown.
        self.persist: Callable[[Job, JobRecord, list[EncodedImage]], None] | None = None
        self.final_saved = False  # its final record is on disk: earlier states must not replace it
        # The latest live preview (preview_every) while it runs; let go of when it ends (a
        # finished job has its images), its step kept for the record.
        self.preview: JobPreview | None = None
        self.preview_step: int | None = None
        self.interrupt_asked = False  # stop early, keep the images (A1111's interrupt, skip)
        self.skipped = False  # ... asked as A1111's skip
        self._lock = threading.Lock()
        self._ending = False  # a final state has been claimed and is being made durable
        self._drawn = threading.Event()  # the worker is done with it, one way or another

    def record(self, queue_position: int | None = None) -> JobRecord:
        """The job as plain data; `queue_position` as the queue holding it counts it."""
        result = self.result
        return JobRecord(
            id=self.id,
            owner=self.owner,
            status=self.status,
            request=self.request,
            output=self.output,
            created_at=self.created_at,
            timeout=self.timeout,
            attempt=self.attempt,
            step=self.step,
            total_steps=self.total_steps,
            queue_position=queue_position if self.status is JobStatus.QUEUED else None,
            queue_seconds=self.queue_seconds(),
            run_seconds=self.run_seconds(),
            ran=self.started is not None,
            batch_size=self.batch_size,
            finished_at=self.finished_at,
            error=self.error,
            scheduler=result.scheduler if result else None,
            sampler=result.sampler if result else None,
            preview_step=self.preview_step,
            interrupted=self.interrupt_asked,
            skipped=self.skipped,
        )

    @classmethod
    def restore(cls, record: JobRecord, images: list[EncodedImage]) -> Job:
        """A job read back from its `record` (and its images), e.g. after a restart."""
        job = cls(None, record.request, record.output, record.timeout, record.owner)
        job.id, job.created_at, job.finished_at = record.id, record.created_at, record.finished_at
        job.step, job.total_steps = record.step, record.total_steps
        job.batch_size, job.attempt = record.batch_size, record.attempt
        # Durations, re-expressed on a clock that starts at 1 (0 would read as "not yet").
        job.submitted = 1.0
        job.started = 1.0 + record.queue_seconds if record.ran else None
        job.finished = 1.0 + record.queue_seconds + record.run_seconds
        job.deadline = None
        job.status = record.status  # unfinished: as its owner (or a dead one) left it
        job.final_saved = record.status.final
        job.error = record.error
        job.interrupt_asked, job.skipped = record.interrupted, record.skipped
        job.preview_step = record.preview_step
        if record.status is JobStatus.SUCCEEDED:
            job.result = GenerationResult(
                images=images,
                model=record.request.model or "",
                request=record.request,
                scheduler=record.scheduler or "",
                sampler=record.sampler or "",
                generation_seconds=record.run_seconds,
                queue_seconds=record.queue_seconds,
            )
        if record.status.final:
            job._drawn.set()
        return job

    def requeue(self) -> None:
        """Make a job restored from a process that died queued again, from its first step.

        Its deadline stays where it was, on the wall clock: the time the server was down counts.
        """
        waited = max(0.0, time.time() - self.created_at)
        self.submitted = time.monotonic() - waited
        self.deadline = self.submitted + self.timeout if self.timeout else None
        self.status, self.step, self.started, self.finished = JobStatus.QUEUED, 0, None, None

    # --- the device worker's side ---

    def begin(self, batch_size: int) -> bool:
        """Mark the job running; False if it was cancelled, failed or timed out meanwhile."""
        if self.expired():
            self.expire()
        with self._lock:
            if self.status is not JobStatus.QUEUED or self._ending:
                return False
            self.status = JobStatus.RUNNING
            self.started = time.monotonic()
            self.batch_size = batch_size
            self.attempt += 1
        if self.on_begin is not None:  # records the attempt: a run that kills the process counts
            self.on_begin(self)
        return True

    def progress(self, step: int, total: int) -> None:
        """Record a finished denoising step (the run-control interface, with `should_stop`)."""
        self.step, self.total_steps = step, total
        if self.on_progress is not None:
            self.on_progress(self)

    def interrupted(self) -> bool:
        """Whether its owner asked to stop early and keep the images (`interrupt`)."""
        return self.interrupt_asked

    def take_preview(self, preview: JobPreview) -> None:
        """Keep the latest live preview (the run-control interface)."""
        if self.alive:
            self.preview, self.preview_step = preview, preview.step

    def interrupt(self, skip: bool = False) -> bool:
        """Ask a running job to stop at its next step and keep its images; False if it is not
        running (queued jobs are left to run, as AUTOMATIC1111 leaves queued requests)."""
        with self._lock:
            if self.status is not JobStatus.RUNNING or not self.alive or self.interrupt_asked:
                return False
            self.interrupt_asked, self.skipped = True, skip
        return True

    def should_stop(self) -> bool:
        """Whether nobody wants this run's images any more: cancelled, failed, or past its
        deadline (which ends it here)."""
        if self.expired():
            self.expire()
        return not self.alive

    def drawn(self, raw: RawOutput) -> None:
        """The images exist; they are kept only if nobody cancelled the job meanwhile."""
        with self._lock:
            if self.status is not JobStatus.RUNNING or self._ending:
                return
            self.raw = raw
            if not raw.notes.get("interrupted"):  # an interrupted run keeps the step it reached
                self.step = self.total_steps
            self.finished = time.monotonic()
        self._drawn.set()
        if self.on_drawn is not None:
            self.on_drawn(self)

    def fail(self, error: ModelLayerError) -> bool:
        """End the job with `error`, unless it already ended; True if this call ended it."""
        return self._end(JobStatus.FAILED, error)

    def cancel(self) -> bool:
        """End the job as cancelled unless it already ended or its images exist."""
        return self._end(JobStatus.CANCELLED, None)

    def expire(self) -> bool:
        """End the job because its deadline passed."""
        return self.fail(
            GenerationTimeoutError(
                f"The generation did not finish within its {self.timeout:g} s deadline "
                f"and was stopped (it waited {self.queue_seconds():.1f} s in the queue)."
            )
        )

    def _end(self, status: JobStatus, error: ModelLayerError | None) -> bool:
        with self._lock:
            if self.status.final or self.raw is not None or self._ending:
                return False
            self._ending = True  # claimed: no other end, and no images, can win from here
            self.finished = time.monotonic()
        self._publish(status, None, error)
        return True

    def _publish(
        self, status: JobStatus, result: GenerationResult | None, error: ModelLayerError | None
    ) -> None:
        """Make the final state durable first, then show it: never "succeeded" before that."""
        finished_at = time.time()
        if self.persist is not None:
            record = self.record().with_changes(
                status=status, finished_at=finished_at, error=error, queue_position=None
            )
            if result is not None:
                record = record.with_changes(scheduler=result.scheduler, sampler=result.sampler)
            self.persist(self, record, result.images if result is not None else [])
        with self._lock:
            self.raw, self.result, self.error = None, result, error
            self.preview = None
            self.status, self.finished_at = status, finished_at
        self._drawn.set()

    # --- the caller's side ---

    def succeed(self, result: GenerationResult) -> None:
        """Keep the encoded result and let go of the raw images."""
        self._settle(JobStatus.SUCCEEDED, result, None)

    def fail_encoding(self, error: ModelLayerError) -> None:
        """The images were drawn but could not be encoded."""
        self._settle(JobStatus.FAILED, None, error)

    def _settle(
        self, status: JobStatus, result: GenerationResult | None, error: ModelLayerError | None
    ) -> None:
        # Once drawn, a job can no longer be cancelled: only the encoder settles it.
        self._publish(status, result, error)

    @property
    def alive(self) -> bool:
        """Still waiting for images: not ended, and not yet drawn."""
        return not self.status.final and self.raw is None and not self._ending

    def expired(self, now: float | None = None) -> bool:
        """Its deadline has passed."""
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def remaining(self) -> float | None:
        """Seconds left before the deadline; None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def wait(self, timeout: float | None) -> bool:
        """Block until the worker is done with the job; False if `timeout` passed first."""
        return self._drawn.wait(timeout)

    def queue_seconds(self) -> float:
        """Time spent waiting for the device."""
        end = self.started or self.finished or time.monotonic()
        return end - self.submitted

    def run_seconds(self) -> float:
        """Time spent on the device (so far, while running)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started
